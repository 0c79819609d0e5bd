/*
 * fuzz/fuzz_engine_server.c - a fresh buffer-mode server engine per input; the input is what a
 * client sends (ClientHellos, records, garbage), cut into chunks whose sizes the input's header
 * chooses, unwrapped into small and large destinations, every call checked against the engine's
 * contract (fuzz/harness.c). Header layout: fz_input in fuzz/harness.h; seeds:
 * fuzz/corpus/fuzz_engine_server/ (fuzz/make_corpus.c).
 */
#include "harness.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_world_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_input in = fz_parse(data, size);
    fz_rng_reset();
    tl_engine_opts opts = {.flags = (in.h[0] & FZ_F_DELEGATE) ? TL_ENGINE_DELEGATE_TASKS : 0};
    int cfg = (in.h[0] & 7) % FZ_N_SERVER;
    tl_engine *e = tl_engine_new(fz_w.server[cfg], &opts);
    FZ_MUST(e, "tl_engine_new");
    fz_run run;
    fz_run_init(&run, e, "server", 0x53000000u | ((uint32_t)cfg << 12),
                (in.h[0] & FZ_F_SMALL_WRAP) ? (size_t)in.h[3] + 1 : 0);
    fz_drive(&run, &in);
    fz_run_free(&run);
    return 0;
}
