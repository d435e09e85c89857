;; grows its memory until the host's cap refuses, then traps
(module (memory (export "memory") 1)
  (func (export "transform") (param i32) (result i32)
    (loop $l (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable)) (br $l))
    (i32.const 0)))
