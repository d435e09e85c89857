(module (import "ringgate" "output_write" (func $out (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "transform") (param i32) (result i32) (call $out (i32.const 0) (i32.const 0)) (i32.const 0)))
