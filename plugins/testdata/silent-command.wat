;; a WASI command that prints nothing: the delivery is dropped
(module (memory (export "memory") 1) (func (export "_start")))
