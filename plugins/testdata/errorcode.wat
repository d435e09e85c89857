(module (import "ringgate" "error_set" (func $e (param i32 i32)))
  (memory (export "memory") 1) (data (i32.const 0) "payload has no phone number")
  (func (export "transform") (param i32) (result i32) (call $e (i32.const 0) (i32.const 27)) (i32.const 2)))
