;; A binary tree of calls 60 levels deep, with no loop anywhere: only a count carried across
;; function entries ends it at its deadline (2^60 calls would take centuries).
(module
  (memory (export "memory") 1)
  (func $fib (param i32) (result i32)
    (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
      (then (local.get 0))
      (else (i32.add
        (call $fib (i32.sub (local.get 0) (i32.const 1)))
        (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
  (func (export "transform") (param i32) (result i32)
    (drop (call $fib (i32.const 60)))
    (i32.const 0)))
