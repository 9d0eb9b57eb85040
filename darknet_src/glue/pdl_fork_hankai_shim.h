/*
 * Forced include for hank-ai's darknet_cfg_and_state.cpp (g++ -include).
 *
 * The CfgAndState singleton is built while the library loads, because
 * yolo_layer.cpp holds a static reference to it, and its constructor
 * calls std::srand(std::time(nullptr)) and std::setlocale(LC_ALL, "C").
 * A library must not reseed its host's random generator or switch the
 * host's locale, so both calls are routed to the glue in this one unit.
 * The calls are written with std::, so the stand-ins are also made
 * visible in namespace std.
 */
#ifndef PDL_FORK_HANKAI_SHIM_H
#define PDL_FORK_HANKAI_SHIM_H

#include <clocale>
#include <cstdlib>

extern "C" void pdl_srand(unsigned int seed);
extern "C" char *pdl_setlocale(int category, const char *locale);

// NOTE: a using-declaration in namespace std is outside the C++ standard,
// but GCC and Clang accept it, and it keeps the fork's file unchanged.
namespace std {
using ::pdl_setlocale;
using ::pdl_srand;
}

#define srand(seed) pdl_srand(seed)
#define setlocale(category, locale) pdl_setlocale(category, locale)

#endif
