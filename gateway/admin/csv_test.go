package admin

import "testing"

func TestCellKeepsFormulasOut(t *testing.T) {
	for in, want := range map[string]string{
		"":                               "",
		"+14155551234":                   "+14155551234",
		"-12":                            "-12",
		"google":                         "google",
		"=HYPERLINK(\"http://x\",\"a\")": "'=HYPERLINK(\"http://x\",\"a\")",
		"@SUM(A1)":                       "'@SUM(A1)",
		"+cmd|' /C calc'!A0":             "'+cmd|' /C calc'!A0",
		"-2+3":                           "'-2+3",
		"+":                              "'+",
		"\tx":                            "'\tx",
	} {
		if got := cell(in); got != want {
			t.Errorf("cell(%q) = %q, want %q", in, got, want)
		}
	}
}
