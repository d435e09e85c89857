(module (import "ringgate" "open_socket" (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "transform") (param i32) (result i32) (i32.const 0)))
