(module (memory (export "memory") 1)
  (func (export "transform") (param i32) (result i32) (loop $l (br $l)) (i32.const 0)))
