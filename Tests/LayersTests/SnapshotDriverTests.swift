// Which driver a snapshot gets, and what happens when overlay refuses: issue 12 (kernels before
// 6.8, file systems overlay cannot use as its upper layer).

import Foundation
import Glibc
import Testing
import TestSupport

@testable import Layers

/// Runs `body` on a thread of its own and waits at most `seconds` for it: `nil` when it did not
/// return in time (the thread is left behind, blocked), so a hang fails the test instead of
/// stopping the run.
func returning<T: Sendable>(within seconds: Int, _ body: @escaping @Sendable () throws -> T) throws -> T? {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Thread {
        box.result = Result { try body() }
        done.signal()
    }.start()
    guard done.wait(timeout: .now() + .seconds(seconds)) == .success else { return nil }
    return try box.result!.get()
}

/// Where `returning(within:_:)`'s thread leaves its result; read only after it signalled.
private final class ResultBox<T>: @unchecked Sendable { var result: Result<T, any Error>? }

@Suite(.serialized)
struct SnapshotDriverTests {
    /// Two small layers: the second adds a file and deletes one of the first.
    func twoLayers(_ test: TestStore) async throws -> Layer {
        let base = try await test.unpack([.directory("etc"), .file("etc/hostname", "base\n"), .file("etc/gone", "x")])
        return try await test.unpack([.file("etc/motd", "top\n"), .whiteout("etc/gone")], parent: base.chainID)
    }

    /// An overlay upper directory on overlayfs is refused (EINVAL), as `lowerdir+` is by every
    /// kernel before 6.8: the snapshot falls back to the copy driver. It used to hang for ever
    /// there, waiting for the store lock `createSnapshot` itself held.
    @Test func refusedOverlayFallsBackToTheCopyDriver() async throws {
        let before = LeakSnapshot.take()
        let test = try TestStore()
        let top = try await twoLayers(test)
        let outer = test.directory.path + "/outer"
        for name in ["", "/lower", "/upper", "/work", "/merged"] { _ = mkdir(outer + name, 0o755) }
        try run(["mount", "-t", "overlay", "-o",
                 "lowerdir=\(outer)/lower,upperdir=\(outer)/upper,workdir=\(outer)/work", "berth-test", outer + "/merged"])
        defer { _ = umount2(outer + "/merged", Int32(MNT_DETACH)) }

        let store = test.store
        let directory = outer + "/merged/c1"
        guard let snapshot = try returning(within: 60, {
            try store.createSnapshot(topChainID: top.chainID, at: directory)
        }) else {
            Issue.record("createSnapshot did not return within 60 s after overlay was refused")
            return
        }
        #expect(snapshot.driver == .copy)
        let tree = captureTree(snapshot.rootfs)
        #expect(tree["etc/hostname"]?.data == "base\n")
        #expect(tree["etc/motd"]?.data == "top\n")
        #expect(tree["etc/gone"] == nil)
        #expect(store.snapshot(at: directory)?.driver == .copy)
        try snapshot.remove()
        #expect(!exists(directory))
        #expect(umount2(outer + "/merged", 0) == 0)
        try test.remove()
        #expect(await LeakSnapshot.expectClean(since: before).isEmpty)
    }

    /// Every way of passing the layers gives the tree the image spec defines; the kernel takes
    /// `lowerdir+` only from 6.8 on, and classic options and descriptors everywhere.
    @Test(arguments: [OverlayOptions.appended, .classic, .descriptors])
    func everyWayOfPassingTheLayersGivesTheSameTree(_ options: OverlayOptions) async throws {
        let before = LeakSnapshot.take()
        let test = try TestStore()
        let layers = try await LayerStackTests().unpackStack(test)
        let directory = test.directory.path + "/c1"
        if options == .appended && !kernelAtLeast(6, 8) {
            #expect(throws: LayerError.self) {
                try test.store.createSnapshot(topChainID: layers.last?.chainID, at: directory, driver: .overlay,
                                              overlayOptions: options)
            }
        } else {
            let snapshot = try test.store.createSnapshot(topChainID: layers.last?.chainID, at: directory,
                                                         driver: .overlay, overlayOptions: options)
            #expect(snapshot.driver == .overlay)
            let tree = captureTree(snapshot.rootfs)
            for path in Set(tree.keys).union(stackExpected.keys).sorted() {
                #expect(tree[path] == stackExpected[path], "\(path)")
            }
            let mount = mountSuperOptions(at: snapshot.rootfs)
            switch options {
            case .appended: #expect(mount?.contains(layers[2].path) == true, "\(mount ?? "-")")
            case .classic: #expect(mount?.contains("lowerdir=" + layers[2].path) == true, "\(mount ?? "-")")
            case .descriptors: #expect(mount?.contains("lowerdir=/proc/self/fd/") == true, "\(mount ?? "-")")
            }
            try snapshot.remove()
        }
        try test.remove()
        #expect(await LeakSnapshot.expectClean(since: before).isEmpty)
    }

    /// With an owner shift (a user namespace's mapping), both drivers give the stack's tree
    /// with every owner shifted (set-user-id bits, file capabilities and hard links kept), from
    /// one id-shifted copy of each layer, root's alone, that later snapshots share; a write to
    /// one snapshot reaches neither the copies nor the other snapshot, and the layers keep their
    /// owners.
    @Test(arguments: [SnapshotDriver.overlay, .copy])
    func anOwnerShiftGivesShiftedOwnersFromSharedReadOnlyCopies(_ driver: SnapshotDriver) async throws {
        let before = LeakSnapshot.take()
        let test = try TestStore()
        let layers = try await LayerStackTests().unpackStack(test)
        let owners = OwnerShift(hostID: 200_000, size: 65536)
        let snapshots = try ["c1", "c2"].map { name in
            try test.store.createSnapshot(topChainID: layers.last?.chainID, at: test.directory.path + "/" + name,
                                          driver: driver, owners: owners)
        }
        for snapshot in snapshots {
            #expect(snapshot.driver == driver && snapshot.owners == owners)
            #expect(test.store.snapshot(at: snapshot.directory)?.owners == owners)
            let tree = captureTree(snapshot.rootfs)
            for path in Set(tree.keys).union(stackExpected.keys).sorted() {
                var expected = stackExpected[path]
                expected?.uid += 200_000
                expected?.gid += 200_000
                #expect(tree[path] == expected, "\(path)")
            }
            var st = stat(), link = stat()
            #expect(lstat(snapshot.rootfs, &st) == 0 && st.st_uid == 200_000 && st.st_gid == 200_000)
            #expect(lstat(snapshot.rootfs + "/bin/tool", &st) == 0 && lstat(snapshot.rootfs + "/bin/tool-link", &link) == 0
                    && st.st_ino == link.st_ino, "hard link kept")
        }
        let copies = layers.map { String($0.path.dropLast("/diff".count)) + "/shifted" }
        for directory in copies {
            #expect((try? FileManager.default.contentsOfDirectory(atPath: directory)) == ["200000-65536"])
            var st = stat()
            #expect(lstat(directory, &st) == 0 && st.st_uid == 0 && st.st_mode & 0o777 == 0o700)
        }
        #expect(captureTree(layers[0].path)["etc/passwd"]?.uid == 0, "the layer keeps its owners")
        let written = open(snapshots[0].rootfs + "/etc/passwd", O_WRONLY | O_TRUNC)
        #expect(written >= 0 && write(written, "changed\n", 8) == 8)
        close(written)
        #expect(captureTree(snapshots[1].rootfs)["etc/passwd"]?.data == stackExpected["etc/passwd"]?.data)
        for directory in copies {
            if let passwd = captureTree(directory + "/200000-65536")["etc/passwd"] { #expect(passwd.data != "changed\n") }
        }
        for snapshot in snapshots { try snapshot.remove() }
        try test.remove()
        #expect(await LeakSnapshot.expectClean(since: before).isEmpty)
    }

    /// Forty layers whose paths do not fit in one page: classic options cannot carry them, the
    /// layers as descriptors can, and the automatic choice mounts overlay, never a copy.
    @Test func layerPathsLongerThanAPageStillGetOverlay() async throws {
        let before = LeakSnapshot.take()
        let test = try TestStore()
        var top: Layer?
        for index in 0..<40 {
            top = try await test.unpack([.file("f\(index)", "\(index)")], parent: top?.chainID)
        }
        let layers = try test.store.chain(topChainID: top!.chainID)
        #expect(LayerStore.classicOverlayOptions(lowers: layers.map(\.path), upper: "/u", work: "/w") == nil)
        do {
            _ = try test.store.createSnapshot(topChainID: top!.chainID, at: test.directory.path + "/c0",
                                              driver: .overlay, overlayOptions: .classic)
            Issue.record("classic options took forty long layer paths")
        } catch { #expect(error.code == .unsupported, "\(error)") }
        for (name, options) in [("c1", OverlayOptions.descriptors), ("c2", nil)] {
            let snapshot = try test.store.createSnapshot(topChainID: top!.chainID, at: test.directory.path + "/" + name,
                                                         driver: nil, overlayOptions: options)
            #expect(snapshot.driver == .overlay)
            let tree = captureTree(snapshot.rootfs)
            #expect((0..<40).allSatisfy { tree["f\($0)"]?.data == "\($0)" })
            try snapshot.remove()
        }
        try test.remove()
        #expect(await LeakSnapshot.expectClean(since: before).isEmpty)
    }

    @Test func optionStringsEscapeWhatOverlaySplitsOn() {
        #expect(LayerStore.classicOverlayOptions(lowers: ["/a:b", "/c,d"], upper: "/u,1", work: "/w\\x")
            == #"lowerdir=/a\:b:/c\,d,upperdir=/u\,1,workdir=/w\\x"#)
    }
}

/// Whether the running kernel is at least `major.minor`.
func kernelAtLeast(_ major: Int, _ minor: Int) -> Bool {
    var name = utsname()
    uname(&name)
    let release = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
    guard parts.count == 2 else { return false }
    return (parts[0], parts[1]) >= (major, minor)
}
