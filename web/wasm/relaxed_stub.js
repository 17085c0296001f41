// Emscripten JS library for TABFIT_WASM_RELAXED builds: satisfies the import
// env.tabfit_relaxed_dot_add that src/quant/kernels_wasm.cpp calls in place of
// i32x4.relaxed_dot_i8x16_i7x16_add_s. scripts/wasm-relaxed-patch.mjs rewrites every
// call of it into that instruction after linking, so this function never runs in a
// patched module; in an unpatched one it stops the kernel with a clear error.
mergeInto(LibraryManager.library, {
  tabfit_relaxed_dot_add: function () {
    throw new Error('tabfit: this .wasm was built with TABFIT_WASM_RELAXED but not patched by scripts/wasm-relaxed-patch.mjs');
  },
});
