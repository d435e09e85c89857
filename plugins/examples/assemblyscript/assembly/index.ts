// A ringgate transform in AssemblyScript. It delivers only the event types listed in the
// endpoint's transform.config "only" (comma-separated; all when absent), adds an
// X-Ringgate-Event header and leaves the body as it is.
//
//   npm ci && npm run build        (make plugins does it)

@external("ringgate", "meta_get")
declare function meta_get(keyPtr: usize, keyLen: i32, bufPtr: usize, bufLimit: i32): i32;
@external("ringgate", "config_get")
declare function config_get(keyPtr: usize, keyLen: i32, bufPtr: usize, bufLimit: i32): i32;
@external("ringgate", "header_set")
declare function header_set(namePtr: usize, nameLen: i32, valuePtr: usize, valueLen: i32): i32;
@external("ringgate", "log")
declare function log(level: i32, ptr: usize, len: i32): void;
@external("ringgate", "error_set")
declare function error_set(ptr: usize, len: i32): void;

function utf8(s: string): ArrayBuffer {
  return String.UTF8.encode(s);
}

// get reads meta_get or config_get into a string; null when absent.
function get(meta: bool, key: string): string | null {
  const k = utf8(key);
  const buf = new ArrayBuffer(256);
  const n = meta
    ? meta_get(changetype<usize>(k), k.byteLength, changetype<usize>(buf), buf.byteLength)
    : config_get(changetype<usize>(k), k.byteLength, changetype<usize>(buf), buf.byteLength);
  if (n < 0) return null;
  if (n > buf.byteLength) return null; // longer than any event list we expect
  return String.UTF8.decode(buf.slice(0, n));
}

function info(msg: string): void {
  const b = utf8(msg);
  log(1, changetype<usize>(b), b.byteLength);
}

export function transform(n: i32): i32 {
  const event = get(true, "event");
  if (event === null) {
    const m = utf8("no event in the metadata");
    error_set(changetype<usize>(m), m.byteLength);
    return 2;
  }
  const only = get(false, "only");
  if (only !== null) {
    const allowed = only.split(",");
    let keep = false;
    for (let i = 0; i < allowed.length; i++) {
      if (allowed[i].trim() == event) keep = true;
    }
    if (!keep) {
      info("dropped " + event);
      return 1;
    }
  }
  const name = utf8("X-Ringgate-Event");
  const value = utf8(event);
  header_set(changetype<usize>(name), name.byteLength, changetype<usize>(value), value.byteLength);
  return 0; // deliver the original payload
}

// abort replaces AssemblyScript's env.abort import: the host provides only the ringgate ABI.
export function abort(message: string | null, file: string | null, line: u32, column: u32): void {
  const m = utf8(message !== null ? message : "abort");
  error_set(changetype<usize>(m), m.byteLength);
  unreachable();
}
