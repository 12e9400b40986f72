/*
 * What swiftrt.o asks of the Swift runtime, answered by a program without Swift.
 *
 * swiftc links every executable of a package, a C one too, with swiftrt.o, whose constructor
 * registers the image's Swift metadata with the runtime. This program has no Swift metadata,
 * so registering it is nothing; answering the two references here keeps the static link from
 * pulling in the Swift runtime: the binary shrinks from 9.5 MB to under 1 MB, and a resident
 * supervisor from 1.6 MiB to about 0.8 MiB. Should a toolchain's swiftrt.o reference more, the
 * link pulls the runtime's archive member and fails loudly on the duplicate symbol.
 */
#include <stdbool.h>

struct swift_dso_image;

void swift_addNewDSOImage(struct swift_dso_image *image);
bool _swift_backtrace_isThunkFunction(const char *name);

void swift_addNewDSOImage(struct swift_dso_image *image) { (void)image; }

bool _swift_backtrace_isThunkFunction(const char *name)
{
    (void)name;
    return false;
}
