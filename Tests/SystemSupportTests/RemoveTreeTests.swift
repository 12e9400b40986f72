// The one removeTree: it never follows a symlink and never descends into a mount, told by the
// mount id (statx STATX_MNT_ID) rather than st_dev (issue 12).

import Glibc
import SystemPackage
@testable import SystemSupport
import Testing
import TestSupport

@Suite(.serialized)
struct RemoveTreeTests {
    private func write(_ path: String, _ text: String = "x") {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        close(fd)
    }

    private func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    @Test func removesATreeWithoutFollowingSymlinks() throws {
        let directory = try TemporaryDirectory(prefix: "remove-tree")
        let outside = directory.path + "/outside"
        let tree = directory.path + "/tree"
        for path in [outside, tree, tree + "/a", tree + "/a/b"] { mkdir(path, 0o755) }
        write(outside + "/keep")
        write(tree + "/a/b/file")
        symlink(outside, tree + "/a/link")
        try removeTree(tree)
        #expect(!exists(tree))
        #expect(exists(outside + "/keep"), "the symlink's target was not touched")
        try removeTree(tree)  // missing: not an error
        try directory.remove()
    }

    /// A tmpfs mounted inside the tree: another file system, another st_dev.
    @Test func doesNotCrossAMountOfAnotherFileSystem() throws {
        let directory = try TemporaryDirectory(prefix: "remove-tree")
        let tree = directory.path + "/tree"
        for path in [tree, tree + "/sub", tree + "/sub/mnt"] { mkdir(path, 0o755) }
        #expect(mount("tmpfs", tree + "/sub/mnt", "tmpfs", 0, "size=1m") == 0)
        defer { umount2(tree + "/sub/mnt", Int32(MNT_DETACH)) }
        write(tree + "/sub/mnt/inside")

        #expect(throws: SystemError.self) { try removeTree(tree) }
        do { try removeTree(tree) } catch { #expect(error.kind == .mountPoint && error.path == tree + "/sub/mnt") }
        #expect(exists(tree + "/sub/mnt/inside"), "nothing below the mount was removed")

        #expect(umount2(tree + "/sub/mnt", 0) == 0)
        try removeTree(tree)
        #expect(!exists(tree))
        try directory.remove()
    }

    /// A bind mount of a directory of the same file system: the same st_dev, which an st_dev
    /// walk would delete through into the bind's source.
    @Test func doesNotCrossABindMountOfTheSameFileSystem() throws {
        let directory = try TemporaryDirectory(prefix: "remove-tree")
        let source = directory.path + "/source"
        let tree = directory.path + "/tree"
        for path in [source, tree, tree + "/bound"] { mkdir(path, 0o755) }
        write(source + "/precious")
        #expect(mount(source, tree + "/bound", nil, UInt(MS_BIND), nil) == 0)
        defer { umount2(tree + "/bound", Int32(MNT_DETACH)) }
        var a = stat(), b = stat()
        #expect(stat(tree, &a) == 0 && stat(tree + "/bound", &b) == 0 && a.st_dev == b.st_dev)

        do {
            try removeTree(tree)
            Issue.record("removeTree went through a bind mount")
        } catch {
            #expect(error.kind == .mountPoint)
        }
        #expect(exists(source + "/precious"), "the bind's source was not touched")

        #expect(umount2(tree + "/bound", 0) == 0)
        try removeTree(tree)
        #expect(!exists(tree) && exists(source + "/precious"))
        try directory.remove()
    }

    /// An overlay whose layers sit on two file systems (a tmpfs and the disk): its files report
    /// different st_dev, but they are one mount, so emptying it is no crossing.
    @Test func emptiesAnOverlayWhoseLayersSitOnTwoFileSystems() throws {
        let directory = try TemporaryDirectory(prefix: "remove-tree")
        let base = directory.path
        for name in ["tmpfs", "disk", "upper", "work", "merged"] { mkdir(base + "/" + name, 0o755) }
        #expect(mount("tmpfs", base + "/tmpfs", "tmpfs", 0, "size=1m") == 0)
        defer { umount2(base + "/tmpfs", Int32(MNT_DETACH)) }
        mkdir(base + "/tmpfs/dir", 0o755)
        write(base + "/tmpfs/dir/from-tmpfs")
        mkdir(base + "/disk/dir", 0o755)
        write(base + "/disk/dir/from-disk")
        let options = "lowerdir=\(base)/tmpfs:\(base)/disk,upperdir=\(base)/upper,workdir=\(base)/work"
        #expect(mount("overlay", base + "/merged", "overlay", 0, options) == 0)
        defer { umount2(base + "/merged", Int32(MNT_DETACH)) }
        var a = stat(), b = stat()
        #expect(lstat(base + "/merged/dir/from-tmpfs", &a) == 0 && lstat(base + "/merged/dir/from-disk", &b) == 0)

        let merged = OwnedDirectory(base + "/merged")
        try emptyDirectory(in: merged.fd, "dir", path: base + "/merged/dir")
        #expect(!exists(base + "/merged/dir/from-tmpfs") && !exists(base + "/merged/dir/from-disk"))
        #expect(exists(base + "/tmpfs/dir/from-tmpfs"), "the lower layers are untouched")
        merged.close()

        #expect(umount2(base + "/merged", 0) == 0)
        #expect(umount2(base + "/tmpfs", 0) == 0)
        try removeTree(base + "/work")  // overlayfs leaves a work/work directory of mode 000
        try directory.remove()
    }
}

/// An open directory for `*at` calls in a test.
private final class OwnedDirectory {
    private(set) var fd: Int32
    init(_ path: String) { fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
    deinit { close() }
}
