;; Keeps a counter in its memory and sends it as the body: each call on the same instance gives
;; a different result for the same input, which `ringgate plugin run --repeat` refuses.
(module
  (import "ringgate" "output_write" (func $output_write (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "transform") (param $n i32) (result i32)
    (i32.store8 (i32.const 0) (i32.add (i32.load8_u (i32.const 0)) (i32.const 49)))
    (call $output_write (i32.const 0) (i32.const 1))
    (i32.const 0)))
