;; sets a 1,000,000-byte body 50 times over (only the last counts), then delivers
(module (import "ringgate" "output_write" (func $w (param i32 i32)))
  (memory (export "memory") 16)
  (func (export "transform") (param i32) (result i32) (local $i i32)
    (loop $l
      (call $w (i32.const 16) (i32.const 1000000))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 50))))
    (i32.const 0)))
