;; Grows its table by two million entries, past the host's cap of 1,048,576 on any table's
;; maximum: the grow fails (-1) and the transform delivers; had it grown, it fails with code 2.
(module
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (func (export "transform") (param i32) (result i32)
    (if (result i32) (i32.eq (table.grow $t (ref.null func) (i32.const 2000000)) (i32.const -1))
      (then (i32.const 0))
      (else (i32.const 2)))))
