;; Loops forever through a br_if from inside blocks and an if back to the loop around them: the
;; count goes on the branch's way back.
(module (memory (export "memory") 1)
  (func (export "transform") (param i32) (result i32)
    (loop $l
      (block $b
        (if (i32.eqz (local.get 0))
          (then (block $c (br_if $l (i32.const 1)))))
        (br $l)))
    (i32.const 0)))
