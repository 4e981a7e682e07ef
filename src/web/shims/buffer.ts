/**
 * Node's Buffer for the browser build (the `buffer` package, injected by esbuild wherever a
 * module names the global): the model keeps config space and snapshot files in Buffers.
 */
export { Buffer } from "buffer";
