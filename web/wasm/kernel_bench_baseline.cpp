// Compiles an older copy of src/quant/kernels_wasm.cpp (path in the macro
// TABFIT_KERNEL_BENCH_BASELINE, e.g. from `git show REV:src/quant/kernels_wasm.cpp`)
// into namespace tabfit::qk_base, so kernel_bench can time old and new kernels
// interleaved in one process. Only built with -DTABFIT_KERNEL_BENCH_BASELINE=<file>.
#define qk qk_base
#include TABFIT_KERNEL_BENCH_BASELINE
