;; Loops forever through a br_if back to a loop that takes a parameter: such a loop is counted
;; at its head, since the br_if cannot be put under an if.
(module (memory (export "memory") 1)
  (func (export "transform") (param i32) (result i32)
    (i32.const 0)
    (loop $l (param i32) (result i32)
      (i32.add (i32.const 1))
      (br_if $l (i32.const 1)))
    (drop)
    (i32.const 0)))
