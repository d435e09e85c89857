;; A binary tree of calls, 40 levels deep, whose leaves each loop 1,000 times: no single loop
;; comes near the instrumentation's yieldEvery iterations, so only a count carried across calls
;; and returns ends it at its deadline. It imports sched_yield, as Go modules do, to be
;; instrumented.
(module
  (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
  (memory (export "memory") 1)
  (func $leaf (local $i i32)
    (local.set $i (i32.const 1000))
    (loop $l (br_if $l (local.tee $i (i32.sub (local.get $i) (i32.const 1)))))
    ;; leave through a branch to the function's own label, not through its end
    (br_if 0 (i32.const 1))
    (unreachable))
  (func $fan (param $d i32)
    (if (i32.eqz (local.get $d)) (then (call $leaf) (return)))
    (call $fan (i32.sub (local.get $d) (i32.const 1)))
    (call $fan (i32.sub (local.get $d) (i32.const 1))))
  (func (export "transform") (param i32) (result i32)
    (call $fan (i32.const 40))
    (i32.const 0)))
