;; a WASI command: standard input to standard output, upper-cased is not needed: as is
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 20)
  (func (export "_start")
    (local $total i32)
    ;; iovec at 0: buf at 1024 + total, len 1 MiB - total; nread at 16
    (block $eof (loop $more
      (i32.store (i32.const 0) (i32.add (i32.const 1024) (local.get $total)))
      (i32.store (i32.const 4) (i32.sub (i32.const 1048576) (local.get $total)))
      (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
      (br_if $eof (i32.eqz (i32.load (i32.const 16))))
      (local.set $total (i32.add (local.get $total) (i32.load (i32.const 16))))
      (br $more)))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (local.get $total))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))
