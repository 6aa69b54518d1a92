/* SANITIZED: 1 when this file is built with AddressSanitizer (gcc or clang), else 0. */
#ifndef XVD_TESTS_SANITIZED_H
#define XVD_TESTS_SANITIZED_H

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#endif
