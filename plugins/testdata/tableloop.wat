;; Loops forever through a br_table back to its loop: such a loop is counted at its head.
(module (memory (export "memory") 1)
  (func (export "transform") (param i32) (result i32)
    (block $out (loop $l (br_table $l $l $out (i32.const 1))))
    (i32.const 0)))
