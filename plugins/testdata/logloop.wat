;; logs a 100-byte line 100,000 times, then delivers
(module (import "ringgate" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789")
  (func (export "transform") (param i32) (result i32) (local $i i32)
    (loop $l
      (call $log (i32.const 1) (i32.const 0) (i32.const 100))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 100000))))
    (i32.const 0)))
