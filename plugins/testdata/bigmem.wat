;; asks for 2000 pages (125 MiB) at start, over a 64 MiB cap
(module (memory (export "memory") 2000)
  (func (export "transform") (param i32) (result i32) (i32.const 0)))
