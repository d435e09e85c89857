;; Loops forever, like loop.wat, but imports WASI's sched_yield as Go modules do: the host
;; instruments it to count loop iterations and ends it at its deadline by counting.
(module
  (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
  (memory (export "memory") 1)
  (global $spin (mut i32) (i32.const 0))
  (func $inner
    (loop $l (global.set $spin (i32.add (global.get $spin) (i32.const 1))) (br $l)))
  (func (export "transform") (param i32) (result i32)
    (block $b (loop $outer (call $inner) (br_if $b (i32.const 0)) (br $outer)))
    (i32.const 0)))
