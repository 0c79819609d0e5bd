# tlsloop - build, test, fuzz, bench and install (GNU make). `make help` lists the targets.
#
# Layout of a build directory ($(BUILD), default build/; build-asan/ for the sanitizer pass):
#   obj/<dir>/<name>.o (+ .d)   objects with header dependencies, mirroring the source tree
#   libtlsloop.a                static library (every src/*.c)
#   libtlsloop.so.X.Y.Z         shared library, soname libtlsloop.so.X, exports tl_* only
#   tlsloop                     the program (every tools/*.c, linked with the static library)
#   tests/<layer>/test_*        one binary per tests/unit/<layer>/test_*.c (+ tests/support/*.c)
#   tests/tools/<name>          test helper programs the e2e tests run, one per tests/tools/<name>.c
#   examples/<name>             one binary per examples/<name>.c
#   bench/<name>                one binary per bench/<name>.c, and per folder bench/<name>/ (its *.c)
# The fuzzers live in $(FUZZ_BUILD) (default build-fuzz/), built with clang and libFuzzer.

.DEFAULT_GOAL := all
SHELL := /bin/bash

# ---- tools and knobs ---------------------------------------------------------------------------
ifeq ($(origin CC),default)
CC := gcc
endif
FUZZ_CC ?= clang
PKG_CONFIG ?= pkg-config

BUILD ?= build
FUZZ_BUILD ?= build-fuzz
SAN ?= 0
V ?= 0

# Command `make run` runs: build/tlsloop $(RUN_CMD) $(RUN_ARGS)
RUN_CMD ?= serve
RUN_ARGS ?= --access-log -
# Seconds each fuzz target runs in `make fuzz`; FUZZ_TARGETS selects some (names like fuzz_http).
FUZZ_SECONDS ?= 300
FUZZ_TARGETS ?=
# Phases of `make test` (tests/run.sh): any of normal normal-uring asan asan-uring fuzz checks.
TEST_PHASES ?= normal normal-uring asan asan-uring fuzz checks

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR ?=

# The version comes from the public header, so the soname cannot drift from TL_VERSION_*.
VERSION := $(shell sed -n 's/^.define TL_VERSION_STRING "\([0-9.]*\)".*/\1/p' include/tlsloop/api.h 2>/dev/null)
ifeq ($(VERSION),)
VERSION := 0.1.0
endif
SOMAJOR := $(word 1,$(subst ., ,$(VERSION)))

# ---- flags -------------------------------------------------------------------------------------
# OpenSSL flags, asked of pkg-config once and only when first needed (deps.sh may install it).
OPENSSL_CFLAGS = $(eval OPENSSL_CFLAGS := $$(shell $(PKG_CONFIG) --cflags libssl libcrypto 2>/dev/null))$(OPENSSL_CFLAGS)
OPENSSL_LIBS = $(eval OPENSSL_LIBS := $$(or $$(shell $(PKG_CONFIG) --libs libssl libcrypto 2>/dev/null),-lssl -lcrypto))$(OPENSSL_LIBS)
# liburing: the loop's io_uring backend (src/loop/loop_uring.c).
URING_LIBS = $(eval URING_LIBS := $$(or $$(shell $(PKG_CONFIG) --libs liburing 2>/dev/null),-luring))$(URING_LIBS)
# nghttp2: HTTP/2 framing and HPACK (the library links it).
NGHTTP2_CFLAGS = $(eval NGHTTP2_CFLAGS := $$(shell $(PKG_CONFIG) --cflags libnghttp2 2>/dev/null))$(NGHTTP2_CFLAGS)
NGHTTP2_LIBS = $(eval NGHTTP2_LIBS := $$(or $$(shell $(PKG_CONFIG) --libs libnghttp2 2>/dev/null),-lnghttp2))$(NGHTTP2_LIBS)
# jansson: JSON for the ACME client (the library links it).
JANSSON_CFLAGS = $(eval JANSSON_CFLAGS := $$(shell $(PKG_CONFIG) --cflags jansson 2>/dev/null))$(JANSSON_CFLAGS)
JANSSON_LIBS = $(eval JANSSON_LIBS := $$(or $$(shell $(PKG_CONFIG) --libs jansson 2>/dev/null),-ljansson))$(JANSSON_LIBS)
# libsystemd: sd_notify and socket activation (the library links it).
SYSTEMD_CFLAGS = $(eval SYSTEMD_CFLAGS := $$(shell $(PKG_CONFIG) --cflags libsystemd 2>/dev/null))$(SYSTEMD_CFLAGS)
SYSTEMD_LIBS = $(eval SYSTEMD_LIBS := $$(or $$(shell $(PKG_CONFIG) --libs libsystemd 2>/dev/null),-lsystemd))$(SYSTEMD_LIBS)
# libuv: only examples/uv_echo.c, which drives the engine from libuv's loop (the library does not
# link it; see the per-example flags under "linking").
UV_CFLAGS = $(eval UV_CFLAGS := $$(shell $(PKG_CONFIG) --cflags libuv 2>/dev/null))$(UV_CFLAGS)
UV_LIBS = $(eval UV_LIBS := $$(or $$(shell $(PKG_CONFIG) --libs libuv 2>/dev/null),-luv))$(UV_LIBS)

ifeq ($(SAN),1)
OPT_CFLAGS := -O1 -g
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
# GCC's manual advises against -Werror with sanitizers (their instrumentation causes false
# warnings, mostly -Wmaybe-uninitialized); the normal build keeps -Werror for everything.
WERROR :=
else
OPT_CFLAGS := -O2 -g
SAN_FLAGS :=
WERROR := -Werror
endif

CFLAGS ?= $(OPT_CFLAGS)
LDFLAGS ?=
BASE_CFLAGS = -std=gnu11 -Wall -Wextra $(WERROR) -pthread -Iinclude -D_GNU_SOURCE \
	$(OPENSSL_CFLAGS) $(NGHTTP2_CFLAGS) $(JANSSON_CFLAGS) $(SYSTEMD_CFLAGS) $(SAN_FLAGS) $(CFLAGS) $(EXTRA_CFLAGS)
LIB_CFLAGS = $(BASE_CFLAGS) -Isrc -fvisibility=hidden -fPIC
# Programs (tools, tests, examples, benches) may include "test.h" and private headers in src/.
PROG_CFLAGS = $(BASE_CFLAGS) -Itests -Isrc
LINK_FLAGS = -pthread $(SAN_FLAGS) $(LDFLAGS)
LDLIBS_ALL = $(OPENSSL_LIBS) $(URING_LIBS) $(NGHTTP2_LIBS) $(JANSSON_LIBS) $(SYSTEMD_LIBS) -pthread $(LDLIBS)
# Catch undefined symbols in the shared library (not with sanitizers: clang leaves their runtime
# out of shared objects).
ifeq ($(SAN),1)
SO_DEFS :=
else
SO_DEFS := -Wl,--no-undefined
endif

FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_BASE_CFLAGS = -std=gnu11 -Wall -Wextra -Werror -O1 -g -pthread -Iinclude -D_GNU_SOURCE \
	$(OPENSSL_CFLAGS) $(NGHTTP2_CFLAGS) $(JANSSON_CFLAGS) $(SYSTEMD_CFLAGS) $(EXTRA_CFLAGS)
FUZZ_LIB_CFLAGS = $(FUZZ_BASE_CFLAGS) -Isrc -fsanitize=fuzzer-no-link $(FUZZ_SAN)
FUZZ_PROG_CFLAGS = $(FUZZ_BASE_CFLAGS) -Isrc -Itests -fsanitize=fuzzer $(FUZZ_SAN)

# ---- sources and products ----------------------------------------------------------------------
LIB_SRCS := $(sort $(wildcard src/*/*.c))
TOOL_SRCS := $(sort $(wildcard tools/*.c))
SUPPORT_SRCS := $(sort $(wildcard tests/support/*.c))
UNIT_SRCS := $(sort $(wildcard tests/unit/*/test_*.c))
TESTTOOL_SRCS := $(sort $(wildcard tests/tools/*.c))
EXAMPLE_SRCS := $(sort $(wildcard examples/*.c))
BENCH_SRCS := $(sort $(wildcard bench/*.c))
# A bench program of several files is a folder: bench/<name>/*.c make build/bench/<name>.
BENCH_DIR_SRCS := $(sort $(wildcard bench/*/*.c))
BENCH_DIRS := $(sort $(patsubst bench/%/,%,$(dir $(BENCH_DIR_SRCS))))
FUZZ_SRCS := $(sort $(wildcard fuzz/fuzz_*.c))

LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
TOOL_OBJS := $(TOOL_SRCS:%.c=$(BUILD)/obj/%.o)
SUPPORT_OBJS := $(SUPPORT_SRCS:%.c=$(BUILD)/obj/%.o)
PROG_OBJS := $(TOOL_OBJS) $(SUPPORT_OBJS) $(UNIT_SRCS:%.c=$(BUILD)/obj/%.o) \
	$(TESTTOOL_SRCS:%.c=$(BUILD)/obj/%.o) \
	$(EXAMPLE_SRCS:%.c=$(BUILD)/obj/%.o) $(BENCH_SRCS:%.c=$(BUILD)/obj/%.o) \
	$(BENCH_DIR_SRCS:%.c=$(BUILD)/obj/%.o)

STATIC_LIB := $(BUILD)/libtlsloop.a
SONAME := libtlsloop.so.$(SOMAJOR)
SHARED_REAL := $(BUILD)/libtlsloop.so.$(VERSION)
SHARED_LIBS := $(SHARED_REAL) $(BUILD)/$(SONAME) $(BUILD)/libtlsloop.so
PROGRAM := $(BUILD)/tlsloop
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
TESTTOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(TESTTOOL_SRCS))
EXAMPLE_BINS := $(patsubst examples/%.c,$(BUILD)/examples/%,$(EXAMPLE_SRCS))
BENCH_FILE_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))
BENCH_DIR_BINS := $(BENCH_DIRS:%=$(BUILD)/bench/%)
BENCH_BINS := $(BENCH_FILE_BINS) $(BENCH_DIR_BINS)

FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_STATIC_LIB := $(FUZZ_BUILD)/libtlsloop.a
FUZZ_BINS := $(patsubst fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRCS))
# fuzz/harness.c, what the engine targets share, as an archive: each fuzzer links it, and takes it
# only when it calls into it (fuzz_http and fuzz_proxyproto do not).
FUZZ_HARNESS_OBJ := $(FUZZ_BUILD)/obj/fuzz/harness.o
FUZZ_HARNESS_LIB := $(FUZZ_BUILD)/libfzharness.a

# deps.sh runs once (and again when it changes): every compile waits for this stamp.
DEPS_STAMP := build/.deps-ok

ifeq ($(V),1)
Q :=
say := @true
else
Q := @
say := @printf '  %-7s %s\n'
endif

# ---- main targets ------------------------------------------------------------------------------
.PHONY: all lib deps build-tests test test-quick fuzz fuzz-build fuzz-merge fuzz-corpus bench \
	bench-build soak run install uninstall clean help FORCE

all: $(DEPS_STAMP) lib $(PROGRAM)

lib: $(STATIC_LIB) $(SHARED_LIBS)

deps: $(DEPS_STAMP)

# Everything tests/run.sh runs in one phase (normal, or asan with SAN=1 BUILD=build-asan).
build-tests: all $(UNIT_BINS) $(TESTTOOL_BINS) $(EXAMPLE_BINS) $(BENCH_BINS)

test: $(DEPS_STAMP) build-tests
	@MAKE='$(MAKE)' BUILD='$(BUILD)' FUZZ_BUILD='$(FUZZ_BUILD)' TEST_PHASES='$(TEST_PHASES)' \
		bash tests/run.sh

# The fast loop while developing: the normal build's suite and the checks, no sanitizers or fuzz.
test-quick: $(DEPS_STAMP) build-tests
	@MAKE='$(MAKE)' BUILD='$(BUILD)' FUZZ_BUILD='$(FUZZ_BUILD)' TEST_PHASES='normal checks' \
		bash tests/run.sh

$(DEPS_STAMP): scripts/deps.sh
	@bash scripts/deps.sh
	@mkdir -p $(@D) && touch $@

# ---- stamps that make changes of flags or of the source list rebuild what they affect ----------
# Rewritten only when their text changes, so they do not cause rebuilds otherwise.
define write-if-changed
	@mkdir -p $(@D); printf '%s\n' $(1) | cmp -s - $@ 2>/dev/null || printf '%s\n' $(1) > $@
endef

$(BUILD)/.flags: FORCE
	$(call write-if-changed,'$(CC) $(LIB_CFLAGS) $(PROG_CFLAGS) $(LINK_FLAGS) $(LDLIBS_ALL) $(UV_CFLAGS) $(UV_LIBS)')

$(BUILD)/.lib-objs: FORCE
	$(call write-if-changed,'$(LIB_OBJS)')

$(FUZZ_BUILD)/.flags: FORCE
	$(call write-if-changed,'$(FUZZ_CC) $(FUZZ_LIB_CFLAGS) $(FUZZ_PROG_CFLAGS) $(LDLIBS_ALL)')

$(FUZZ_BUILD)/.lib-objs: FORCE
	$(call write-if-changed,'$(FUZZ_LIB_OBJS)')

# ---- compiling ---------------------------------------------------------------------------------
$(BUILD)/obj/src/%.o: src/%.c $(BUILD)/.flags | $(DEPS_STAMP)
	$(say) CC $<
	@mkdir -p $(@D)
	$(Q)$(CC) $(LIB_CFLAGS) -MMD -MP -c -o $@ $<

$(PROG_OBJS): $(BUILD)/obj/%.o: %.c $(BUILD)/.flags | $(DEPS_STAMP)
	$(say) CC $<
	@mkdir -p $(@D)
	$(Q)$(CC) $(PROG_CFLAGS) $(EXAMPLE_CFLAGS) -MMD -MP -c -o $@ $<

# ---- linking -----------------------------------------------------------------------------------
$(STATIC_LIB): $(LIB_OBJS) $(BUILD)/.lib-objs
	$(say) AR $@
	$(Q)rm -f $@ && $(AR) rcs $@ $(LIB_OBJS)

# -z nodelete: with TL_KDF_TLSLOOP, libcrypto keeps pointers to the provider in the library until
# the process ends; a dlclose must leave it mapped (src/tls/tls_ctx_kdf.c, "Unloading").
$(SHARED_REAL): $(LIB_OBJS) $(BUILD)/.lib-objs src/libtlsloop.map Makefile
	$(say) LD $@
	$(Q)$(CC) -shared $(LINK_FLAGS) $(SO_DEFS) -Wl,-z,nodelete -Wl,--version-script=src/libtlsloop.map \
		-Wl,-soname,$(SONAME) -o $@ $(LIB_OBJS) $(LDLIBS_ALL)

$(BUILD)/$(SONAME): $(SHARED_REAL)
	$(Q)ln -sf $(notdir $<) $@

$(BUILD)/libtlsloop.so: $(BUILD)/$(SONAME)
	$(Q)ln -sf $(notdir $<) $@

$(PROGRAM): $(TOOL_OBJS) $(STATIC_LIB)
	$(say) LD $@
	$(Q)$(CC) $(LINK_FLAGS) -o $@ $(TOOL_OBJS) $(STATIC_LIB) $(LDLIBS_ALL)

$(UNIT_BINS): $(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(SUPPORT_OBJS) $(STATIC_LIB)
	$(say) LD $@
	@mkdir -p $(@D)
	$(Q)$(CC) $(LINK_FLAGS) -o $@ $< $(SUPPORT_OBJS) $(STATIC_LIB) $(LDLIBS_ALL)

$(TESTTOOL_BINS): $(BUILD)/tests/tools/%: $(BUILD)/obj/tests/tools/%.o $(SUPPORT_OBJS) $(STATIC_LIB)
	$(say) LD $@
	@mkdir -p $(@D)
	$(Q)$(CC) $(LINK_FLAGS) -o $@ $< $(SUPPORT_OBJS) $(STATIC_LIB) $(LDLIBS_ALL)

# An example that needs a library of its own sets EXAMPLE_CFLAGS on its object and EXAMPLE_LIBS
# on its binary (target-specific; empty for the others).
EXAMPLE_CFLAGS :=
EXAMPLE_LIBS :=
$(BUILD)/obj/examples/uv_echo.o: EXAMPLE_CFLAGS = $(UV_CFLAGS)
$(BUILD)/examples/uv_echo: EXAMPLE_LIBS = $(UV_LIBS)

$(EXAMPLE_BINS): $(BUILD)/examples/%: $(BUILD)/obj/examples/%.o $(STATIC_LIB)
	$(say) LD $@
	@mkdir -p $(@D)
	$(Q)$(CC) $(LINK_FLAGS) -o $@ $< $(STATIC_LIB) $(EXAMPLE_LIBS) $(LDLIBS_ALL)

$(BENCH_FILE_BINS): $(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(STATIC_LIB)
	$(say) LD $@
	@mkdir -p $(@D)
	$(Q)$(CC) $(LINK_FLAGS) -o $@ $< $(STATIC_LIB) $(LDLIBS_ALL)

# build/bench/<name> from the objects of bench/<name>/*.c (one prerequisite rule per folder).
$(foreach d,$(BENCH_DIRS),$(eval $(BUILD)/bench/$(d): \
	$(patsubst %.c,$(BUILD)/obj/%.o,$(filter bench/$(d)/%,$(BENCH_DIR_SRCS)))))

$(BENCH_DIR_BINS): $(STATIC_LIB)
	$(say) LD $@
	@mkdir -p $(@D)
	$(Q)$(CC) $(LINK_FLAGS) -o $@ $(filter %.o,$^) $(STATIC_LIB) $(LDLIBS_ALL)

# ---- fuzzing (clang + libFuzzer, own build directory) ------------------------------------------
$(FUZZ_BUILD)/obj/src/%.o: src/%.c $(FUZZ_BUILD)/.flags | $(DEPS_STAMP)
	$(say) FUZZCC $<
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(FUZZ_LIB_CFLAGS) -MMD -MP -c -o $@ $<

$(FUZZ_STATIC_LIB): $(FUZZ_LIB_OBJS) $(FUZZ_BUILD)/.lib-objs
	$(say) AR $@
	$(Q)rm -f $@ && $(AR) rcs $@ $(FUZZ_LIB_OBJS)

$(FUZZ_HARNESS_OBJ): fuzz/harness.c $(FUZZ_BUILD)/.flags | $(DEPS_STAMP)
	$(say) FUZZCC $<
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(FUZZ_PROG_CFLAGS) -MMD -MP -c -o $@ $<

$(FUZZ_HARNESS_LIB): $(FUZZ_HARNESS_OBJ)
	$(say) AR $@
	$(Q)rm -f $@ && $(AR) rcs $@ $(FUZZ_HARNESS_OBJ)

$(FUZZ_BINS): $(FUZZ_BUILD)/%: fuzz/%.c $(FUZZ_HARNESS_LIB) $(FUZZ_STATIC_LIB) $(FUZZ_BUILD)/.flags \
		| $(DEPS_STAMP)
	$(say) FUZZLD $@
	$(Q)$(FUZZ_CC) $(FUZZ_PROG_CFLAGS) -MMD -MP -MF $@.d -MT $@ -o $@ $< $(FUZZ_HARNESS_LIB) \
		$(FUZZ_STATIC_LIB) $(LDLIBS_ALL)

fuzz-build: $(DEPS_STAMP) $(FUZZ_BINS)

# Each target runs FUZZ_SECONDS on a scratch copy of fuzz/corpus/<target>/ (build-fuzz/corpus/).
fuzz: fuzz-build
	@FUZZ_BUILD='$(FUZZ_BUILD)' bash scripts/fuzz-run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Fold the inputs that add coverage from build-fuzz/corpus/<t>/ into the committed fuzz/corpus/<t>/.
fuzz-merge: fuzz-build
	@FUZZ_BUILD='$(FUZZ_BUILD)' bash scripts/fuzz-run.sh --merge 0 $(FUZZ_TARGETS)

# Rewrite the generated seeds (fuzz/corpus/*/seed-*) with fuzz/make_corpus.c, built like a test
# program against $(BUILD)'s static library (fuzz/README.md).
FUZZ_CORPUS_GEN := $(BUILD)/fuzz/make_corpus

$(FUZZ_CORPUS_GEN): fuzz/make_corpus.c fuzz/harness.c fuzz/harness.h $(STATIC_LIB) $(BUILD)/.flags \
		| $(DEPS_STAMP)
	$(say) LD $@
	@mkdir -p $(@D)
	$(Q)$(CC) $(PROG_CFLAGS) $(LINK_FLAGS) -o $@ fuzz/make_corpus.c fuzz/harness.c $(STATIC_LIB) \
		$(LDLIBS_ALL)

fuzz-corpus: $(DEPS_STAMP) $(FUZZ_CORPUS_GEN)
	$(FUZZ_CORPUS_GEN) fuzz/corpus

# ---- bench, soak, run --------------------------------------------------------------------------
bench-build: all $(BENCH_BINS)

bench: bench-build
	@if [ -f bench/run.sh ]; then \
		BUILD='$(BUILD)' TLSLOOP_BIN='$(abspath $(PROGRAM))' bash bench/run.sh; \
	else \
		set -e; for b in $(BENCH_BINS); do echo "== $$b"; $$b; done; \
		[ -n '$(BENCH_BINS)' ] || echo "bench: no bench/*.c yet"; \
	fi

soak: build-tests
	@if [ -f tests/soak.sh ]; then \
		SOAK=1 BUILD='$(BUILD)' TLSLOOP_BIN='$(abspath $(PROGRAM))' bash tests/soak.sh; \
	else \
		echo "soak: there is no soak test yet (tests/soak.sh)"; \
	fi

run: all
	exec $(PROGRAM) $(RUN_CMD) $(RUN_ARGS)

# ---- install -----------------------------------------------------------------------------------
install: all
	install -d '$(DESTDIR)$(INCLUDEDIR)/tlsloop' '$(DESTDIR)$(LIBDIR)' '$(DESTDIR)$(BINDIR)' \
		'$(DESTDIR)$(PKGCONFIGDIR)'
	install -m 644 include/tlsloop/*.h '$(DESTDIR)$(INCLUDEDIR)/tlsloop/'
	install -m 644 $(STATIC_LIB) '$(DESTDIR)$(LIBDIR)/'
	install -m 755 $(SHARED_REAL) '$(DESTDIR)$(LIBDIR)/'
	ln -sf libtlsloop.so.$(VERSION) '$(DESTDIR)$(LIBDIR)/$(SONAME)'
	ln -sf $(SONAME) '$(DESTDIR)$(LIBDIR)/libtlsloop.so'
	install -m 755 $(PROGRAM) '$(DESTDIR)$(BINDIR)/'
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(PC_LIBDIR)|g' \
		-e 's|@INCLUDEDIR@|$(PC_INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
		tlsloop.pc.in > '$(DESTDIR)$(PKGCONFIGDIR)/tlsloop.pc'
	chmod 644 '$(DESTDIR)$(PKGCONFIGDIR)/tlsloop.pc'

uninstall:
	rm -rf '$(DESTDIR)$(INCLUDEDIR)/tlsloop'
	rm -f '$(DESTDIR)$(LIBDIR)/libtlsloop.a' '$(DESTDIR)$(LIBDIR)/libtlsloop.so' \
		'$(DESTDIR)$(LIBDIR)/$(SONAME)' '$(DESTDIR)$(LIBDIR)/libtlsloop.so.$(VERSION)' \
		'$(DESTDIR)$(BINDIR)/tlsloop' '$(DESTDIR)$(PKGCONFIGDIR)/tlsloop.pc'

# tlsloop.pc names directories under PREFIX as ${prefix}/..., so pkg-config's
# --define-variable=prefix=DIR can relocate an installed tree.
PC_LIBDIR = $(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))
PC_INCLUDEDIR = $(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))

# ---- misc --------------------------------------------------------------------------------------
clean:
	rm -rf build build-asan $(FUZZ_BUILD) $(filter-out build build-asan,$(BUILD))

help:
	@echo 'Targets:'
	@echo '  all (default)  deps check, build/libtlsloop.{a,so}, build/tlsloop'
	@echo '  test           whole suite: normal, asan (build-asan/), fuzz smoke, checks (tests/run.sh)'
	@echo '  test-quick     normal build suite and checks only'
	@echo '  build-tests    build unit tests, examples and benches without running them'
	@echo '  fuzz           build fuzzers (build-fuzz/) and run each FUZZ_SECONDS'
	@echo '  fuzz-merge     add coverage-increasing inputs from build-fuzz/corpus to fuzz/corpus'
	@echo '  fuzz-corpus    regenerate the recorded seeds fuzz/corpus/*/seed-* (fuzz/make_corpus.c)'
	@echo '  bench          build bench/*.c and bench/*/, run bench/run.sh (or each bench binary)'
	@echo '  soak           run tests/soak.sh with SOAK=1'
	@echo '  run            build/tlsloop $$(RUN_CMD) $$(RUN_ARGS)'
	@echo '  install, uninstall (PREFIX, DESTDIR, BINDIR, LIBDIR, INCLUDEDIR, PKGCONFIGDIR)'
	@echo '  clean'
	@echo 'Variables: CC CFLAGS LDFLAGS LDLIBS EXTRA_CFLAGS BUILD SAN=1 V=1 FUZZ_CC FUZZ_SECONDS'
	@echo '  FUZZ_TARGETS TEST_PHASES RUN_CMD RUN_ARGS'

FORCE:

-include $(wildcard $(BUILD)/obj/*/*.d $(BUILD)/obj/*/*/*.d $(BUILD)/obj/*/*/*/*.d $(FUZZ_BUILD)/obj/*/*.d \
	$(FUZZ_BUILD)/obj/*/*/*.d $(FUZZ_BUILD)/*.d)
