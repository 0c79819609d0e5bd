/*
 * tlsloop/api.h - export and version macros shared by every public header.
 *
 * The shared library is built with -fvisibility=hidden and a version script: only functions marked
 * TL_API (all named tl_*) are exported. Library-internal functions use the reserved prefix tli_ and
 * are never part of the API, even in the static library.
 */
#ifndef TLSLOOP_API_H
#define TLSLOOP_API_H

#define TL_VERSION_MAJOR 0
#define TL_VERSION_MINOR 1
#define TL_VERSION_PATCH 0
#define TL_VERSION_STRING "0.1.0"

#if defined(__GNUC__) || defined(__clang__)
#define TL_API __attribute__((visibility("default")))
#else
#define TL_API
#endif

#endif /* TLSLOOP_API_H */
