;; A ringgate transform in WebAssembly text. The body passes through unchanged; the event type
;; goes out as an X-Ringgate-Event header, and the endpoint's config key "drop" (an event type)
;; filters that event out.
;;   wat2wasm event-header.wat -o event-header.wasm       (make plugins does it)
(module
  (import "ringgate" "meta_get" (func $meta_get (param i32 i32 i32 i32) (result i32)))
  (import "ringgate" "config_get" (func $config_get (param i32 i32 i32 i32) (result i32)))
  (import "ringgate" "header_set" (func $header_set (param i32 i32 i32 i32) (result i32)))
  (import "ringgate" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "event")               ;; 0..5
  (data (i32.const 8) "drop")                ;; 8..12
  (data (i32.const 16) "X-Ringgate-Event")   ;; 16..32
  (data (i32.const 40) "filtered by config") ;; 40..58
  ;; the event type is read to 64..128, the config value to 128..192
  (func $same (param $a i32) (param $b i32) (param $n i32) (result i32)
    (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $b) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))
  (func (export "transform") (param $n i32) (result i32)
    (local $ev i32) (local $drop i32)
    (local.set $ev (call $meta_get (i32.const 0) (i32.const 5) (i32.const 64) (i32.const 64)))
    (local.set $drop (call $config_get (i32.const 8) (i32.const 4) (i32.const 128) (i32.const 64)))
    (if (i32.and (i32.eq (local.get $ev) (local.get $drop))
                 (call $same (i32.const 64) (i32.const 128) (local.get $ev)))
      (then
        (call $log (i32.const 1) (i32.const 40) (i32.const 18))
        (return (i32.const 1))))   ;; drop: recorded as filtered
    (if (i32.gt_s (local.get $ev) (i32.const 0))
      (then (drop (call $header_set (i32.const 16) (i32.const 16) (i32.const 64) (local.get $ev)))))
    (i32.const 0)))                ;; deliver the original payload
