/*
 * fuzz/fuzz_engine_client.c - a buffer-mode client engine (TL_VERIFY_NONE, SNI "localhost") per
 * input: it wraps its ClientHello, then unwraps the input as the server's bytes, in chunks and into
 * destinations the input's header chooses, every call checked against the engine's contract
 * (fuzz/harness.c). The RNG is deterministic, so the ClientHello is the same bytes every time and a
 * server flight recorded by fuzz/make_corpus.c completes the handshake: the seeds reach the
 * encrypted messages, tickets, KeyUpdate, application data and close_notify.
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
    int profile = (in.h[0] & 7) % FZ_N_CLIENT;
    tl_engine *e = fz_new_client(profile, (in.h[0] & FZ_F_DELEGATE) ? TL_ENGINE_DELEGATE_TASKS : 0);
    fz_run run;
    fz_run_init(&run, e, "client", 0x43000000u | ((uint32_t)profile << 12),
                (in.h[0] & FZ_F_SMALL_WRAP) ? (size_t)in.h[3] + 1 : 0);
    /* The client speaks first: its ClientHello. */
    tl_status st = fz_drain(&run);
    FZ_CHECK(st == TL_WANT_INPUT, "client: the first wrap ended %s, not want-input (error '%s')",
             tl_status_name(st), tl_engine_error(e));
    FZ_CHECK(tl_buf_len(&run.out) > 0, "client: no ClientHello");
    fz_drive(&run, &in);
    fz_run_free(&run);
    return 0;
}
