// A tiny WASI (preview1) shim for a reactor module in the page: fd_write
// goes to the console, proc_exit throws, every other call answers ENOSYS.
// dfn_web.wasm imports nothing today; the shim keeps a build that prints
// (or one with the default assert) working.
'use strict';
function dfnWasiImports(getMemory) {
  const ENOSYS = 52;
  const lines = { 1: '', 2: '' };
  const impl = {
    fd_write(fd, iovs, iovsLen, nwrittenPtr) {
      const mem = new DataView(getMemory().buffer);
      let total = 0;
      for (let i = 0; i < iovsLen; i++) {
        const ptr = mem.getUint32(iovs + 8 * i, true), len = mem.getUint32(iovs + 8 * i + 4, true);
        lines[fd] = (lines[fd] || '') + new TextDecoder().decode(new Uint8Array(getMemory().buffer, ptr, len));
        total += len;
      }
      const parts = lines[fd].split('\n');
      lines[fd] = parts.pop();
      for (const p of parts) (fd === 2 ? console.error : console.log)(p);
      mem.setUint32(nwrittenPtr, total, true);
      return 0;
    },
    proc_exit(code) { throw new Error('wasm called proc_exit(' + code + ')'); },
  };
  return { wasi_snapshot_preview1: new Proxy(impl, {
    get: (target, name) => target[name] || (() => ENOSYS),
  }) };
}
