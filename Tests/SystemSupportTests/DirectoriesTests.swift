// `makeDirectories` (mkdir -p) tries the whole path first and climbs only on ENOENT: what is
// missing gets created at any depth, what exists is left alone, and a file in the way fails.

import Glibc
@testable import SystemSupport
import Testing
import TestSupport

@Suite
struct DirectoriesTests {
    private func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR
    }

    @Test func createsEveryMissingLevel() throws {
        let directory = try TemporaryDirectory(prefix: "make-directories")
        let deep = directory.path + "/a/b/c/d"
        try makeDirectories(deep, mode: 0o755)
        #expect(isDirectory(deep))
        // A trailing slash names the same directory; a second call finds it there.
        try makeDirectories(directory.path + "/a/b/e/", mode: 0o755)
        #expect(isDirectory(directory.path + "/a/b/e"))
        try makeDirectories(deep, mode: 0o700)
        try directory.remove()
    }

    @Test func leavesAnExistingDirectoryAsItIs() throws {
        let directory = try TemporaryDirectory(prefix: "make-directories")
        let path = directory.path + "/kept"
        #expect(mkdir(path, 0o700) == 0)
        try makeDirectories(path, mode: 0o755)
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o700)
        try directory.remove()
    }

    @Test func aFileInTheWayFails() throws {
        let directory = try TemporaryDirectory(prefix: "make-directories")
        let file = directory.path + "/file"
        let fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        #expect(fd >= 0)
        close(fd)
        #expect(throws: SystemError.self) { try makeDirectories(file + "/below/deeper", mode: 0o755) }
        try directory.remove()
    }
}
