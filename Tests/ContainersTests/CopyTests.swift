import Containers
import Glibc
import SystemPackage
import Testing
import TestSupport

/// `docker cp`: tar streams and host paths in and out of a container's root filesystem, in
/// every state that has one, and hostile archives that must not reach the host.
@Suite(.serialized)
struct CopyTests {
    /// The tree copied in and out: a directory with its own mode, an executable, a private
    /// file, a relative symlink and a nested file.
    static let tree: [TarEntry] = [
        .directory("tree", mode: 0o750),
        .file("tree/run.sh", "#!/bin/sh\necho run\n", mode: 0o755),
        .file("tree/secret", "hidden\n", mode: 0o600),
        .symlink("tree/link", to: "run.sh"),
        .directory("tree/sub", mode: 0o700),
        .file("tree/sub/deep.txt", "deep inside\n", mode: 0o640),
    ]

    @Test func treeCopiedIntoARunningContainerIsVisibleInsideAndComesBackOutWithModesAndLinks() async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let scratch = try TemporaryDirectory(prefix: "cp-tree")
        defer { try? scratch.remove() }
        let container = try await runtime.run(busybox(["/bin/probe", "sleep", "30"]))
        do {
            try TarFixture.write(Self.tree, to: scratch.path + "/in.tar")
            let input = try FileDescriptor.open(scratch.path + "/in.tar", .readOnly)
            defer { try? input.close() }
            try container.copyIn(from: input, to: "/tmp")

            let seen = try await container.exec(["sh", "-c", "cat /tmp/tree/sub/deep.txt; readlink /tmp/tree/link; stat -c '%a %n' /tmp/tree /tmp/tree/run.sh /tmp/tree/secret /tmp/tree/sub /tmp/tree/sub/deep.txt"])
            #expect(seen.standardOutput == """
                deep inside
                run.sh
                750 /tmp/tree
                755 /tmp/tree/run.sh
                600 /tmp/tree/secret
                700 /tmp/tree/sub
                640 /tmp/tree/sub/deep.txt

                """)
            #expect(try await container.exec(["/tmp/tree/link"]).standardOutput == "run\n")

            // Out as a stream: the top entry is the directory's own name, read by GNU tar.
            let output = try FileDescriptor.open(scratch.path + "/out.tar", .writeOnly, options: [.create, .truncate],
                                                 permissions: .ownerReadWrite)
            try container.copyOut("/tmp/tree", to: output)
            try output.close()
            let listing = try runProgram(["tar", "-tvf", scratch.path + "/out.tar"])
            #expect(listing.status == 0, "\(listing.output)")
            let lines = listing.output.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true) }
            let modes = Dictionary(lines.map { (String($0[5]), String($0[0])) }, uniquingKeysWith: { first, _ in first })
            #expect(modes == ["tree/": "drwxr-x---", "tree/link": "lrwxrwxrwx", "tree/run.sh": "-rwxr-xr-x",
                              "tree/secret": "-rw-------", "tree/sub/": "drwx------", "tree/sub/deep.txt": "-rw-r-----"],
                    "\(listing.output)")
            #expect(listing.output.contains("tree/link -> run.sh"))

            // Out to a host directory: cp's rules put it under its own name.
            try container.copyOut("/tmp/tree", toHostPath: scratch.path)
            #expect(try contents(scratch.path + "/tree/sub/deep.txt") == "deep inside\n")
            #expect(try mode(scratch.path + "/tree") == 0o750)
            #expect(try mode(scratch.path + "/tree/secret") == 0o600)
            #expect(try linkTarget(scratch.path + "/tree/link") == "run.sh")

            // In from a host path to a new name, then visible inside under that name.
            try container.copyIn(fromHostPath: scratch.path + "/tree", to: "/srv-copy")
            #expect(try await container.exec(["cat", "/srv-copy/secret"]).standardOutput == "hidden\n")
        } catch {
            try? await container.remove(force: true)
            throw error
        }
        try await container.remove(force: true)
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    enum State: String, CaseIterable, Sendable { case created, paused, exited }

    @Test(arguments: State.allCases)
    func aFileCopiesOutInEveryStateWithARootFilesystem(_ state: State) async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let scratch = try TemporaryDirectory(prefix: "cp-state")
        defer { try? scratch.remove() }
        let container = try await runtime.create(busybox(["/bin/probe", "sleep", "30"]))
        do {
            switch state {
            case .created: break
            case .paused:
                try await container.start()
                try await container.pause()
            case .exited:
                try await container.start()
                try container.kill()
                _ = await container.wait()
            }
            #expect(container.state.status.rawValue == state.rawValue)
            let output = try FileDescriptor.open(scratch.path + "/out.tar", .writeOnly, options: [.create, .truncate],
                                                 permissions: .ownerReadWrite)
            try container.copyOut("/etc/passwd", to: output)
            try output.close()
            let listing = try runProgram(["tar", "-tf", scratch.path + "/out.tar"])
            #expect(listing.output == "passwd\n")
            let content = try runProgram(["tar", "-xOf", scratch.path + "/out.tar", "passwd"])
            #expect(content.output == (try contents(TestRootfs.busybox() + "/etc/passwd")))
        } catch {
            try? await container.remove(force: true)
            throw error
        }
        try await container.remove(force: true)
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    @Test func aMissingPathIsATypedErrorNamingTheContainerAndThePath() async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let container = try await runtime.create(busybox(["/bin/true"]))
        let sink = try FileDescriptor.open("/dev/null", .writeOnly)
        let empty = try FileDescriptor.open("/dev/null", .readOnly)

        let missing = #expect(throws: ContainerError.self) { try container.copyOut("/nope/file", to: sink) }
        #expect(missing?.code == .notFound)
        #expect("\(missing.map { "\($0)" } ?? "")" == "could not find the file /nope/file in container \(container.name)")

        let missingTarget = #expect(throws: ContainerError.self) { try container.copyIn(from: empty, to: "/nope") }
        #expect(missingTarget?.code == .notFound)
        #expect("\(missingTarget.map { "\($0)" } ?? "")".contains("/nope"))

        let notDirectory = #expect(throws: ContainerError.self) { try container.copyIn(from: empty, to: "/etc/passwd") }
        #expect(notDirectory?.code == .invalidArgument)
        #expect("\(notDirectory.map { "\($0)" } ?? "")".contains("/etc/passwd"))

        let missingHost = #expect(throws: ContainerError.self) {
            try container.copyIn(fromHostPath: "/nonexistent-berth-\(getpid())", to: "/tmp")
        }
        #expect(missingHost?.code == .notFound)

        try sink.close()
        try empty.close()
        try await container.remove()
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    /// One hostile archive copied into `/tmp` of a container. `host` is a directory on the host
    /// holding one file, `victim`, that must stay as it is; `contained` is a path (relative to
    /// the container's root) the archive may create inside the container.
    struct Hostile: Sendable, CustomStringConvertible {
        var description: String
        var entries: @Sendable (_ host: String) -> [TarEntry]
        var refused: Bool
        var contained: String?
    }

    /// Enough `../` to climb from any test directory to `/`.
    static let climb = String(repeating: "../", count: 24)

    static let hostile: [Hostile] = [
        Hostile(description: "dot-dot above the destination", entries: { _ in [.file("../escape", "x")] }, refused: true),
        Hostile(description: "dot-dot to the host directory", entries: { host in
            [.file(climb + String(host.dropFirst()) + "/pwned", "x")]
        }, refused: true),
        Hostile(description: "absolute symlink to the host directory, then a write through it", entries: { host in
            [.symlink("link", to: host), .file("link/pwned", "x")]
        }, refused: true),
        Hostile(description: "absolute symlink to /, then a write through it", entries: { _ in
            [.symlink("root", to: "/"), .file("root/etc/pwned", "x")]
        }, refused: false, contained: "etc/pwned"),
        Hostile(description: "hard link to a host file", entries: { host in
            [.hardlink("hl", to: host + "/victim")]
        }, refused: true),
        Hostile(description: "hard link climbing to a host file", entries: { host in
            [.hardlink("hl", to: climb + String(host.dropFirst()) + "/victim")]
        }, refused: true),
        Hostile(description: "a whiteout name is an ordinary file", entries: { _ in
            [.file(".wh.keep", "x")]
        }, refused: false, contained: "tmp/.wh.keep"),
        Hostile(description: "a directory does not replace a file", entries: { _ in
            [.file("keep", "x"), .directory("keep")]
        }, refused: true, contained: "tmp/keep"),
    ]

    @Test(arguments: hostile)
    func hostileArchivesNeverWriteOutsideTheContainer(_ hostile: Hostile) async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let host = try TemporaryDirectory(prefix: "cp-host")
        defer { try? host.remove() }
        try writeBytes(Array("untouched\n".utf8), to: host.path + "/victim")
        let scratch = try TemporaryDirectory(prefix: "cp-hostile")
        defer { try? scratch.remove() }
        try TarFixture.write(hostile.entries(host.path), to: scratch.path + "/hostile.tar")

        let container = try await runtime.create(busybox(["/bin/true"]))
        let rootfs = container.directory + "/rootfs"
        let siblings = try names(container.directory)
        let input = try FileDescriptor.open(scratch.path + "/hostile.tar", .readOnly)
        do {
            try container.copyIn(from: input, to: "/tmp")
            #expect(!hostile.refused, "\(hostile) was not refused")
        } catch {
            #expect(hostile.refused, "\(hostile): \(error)")
            #expect(error.code == .layer, "\(error)")
        }
        try input.close()
        #expect(try names(host.path) == ["victim"])
        #expect(try contents(host.path + "/victim") == "untouched\n")
        var st = stat()
        #expect(lstat(host.path + "/victim", &st) == 0 && st.st_nlink == 1)
        #expect(try names(container.directory) == siblings, "nothing beside the root filesystem")
        #expect(access(rootfs + "/escape", F_OK) != 0)
        if let contained = hostile.contained { #expect(access(rootfs + "/" + contained, F_OK) == 0) }

        try await container.remove()
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    @Test func symlinksInTheContainerResolveInsideItsRoot() async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let scratch = try TemporaryDirectory(prefix: "cp-links")
        defer { try? scratch.remove() }
        let container = try await runtime.create(busybox(["/bin/true"]))
        let rootfs = container.directory + "/rootfs"
        do {
            try TarFixture.write([.symlink("toroot", to: "/"), .symlink("up", to: "../.."), .directory("dir")],
                                 to: scratch.path + "/links.tar")
            let input = try FileDescriptor.open(scratch.path + "/links.tar", .readOnly)
            defer { try? input.close() }
            try container.copyIn(from: input, to: "/tmp")

            // Reading through the links gives the container's /etc/passwd, never the host's.
            let image = try contents(TestRootfs.busybox() + "/etc/passwd")
            #expect(image != (try? contents("/etc/passwd")))
            for path in ["/tmp/toroot/etc/passwd", "/tmp/up/etc/passwd", "/tmp/up/tmp/up/etc/passwd", "/../../etc/passwd"] {
                try container.copyOut(path, toHostPath: scratch.path + "/passwd")
                #expect(try contents(scratch.path + "/passwd") == image, "\(path)")
            }

            // A symlink as the last component is copied as the symlink.
            let output = try FileDescriptor.open(scratch.path + "/link.tar", .writeOnly, options: [.create, .truncate],
                                                 permissions: .ownerReadWrite)
            try container.copyOut("/tmp/toroot", to: output)
            try output.close()
            #expect(try runProgram(["tar", "-tvf", scratch.path + "/link.tar"]).output.contains("toroot -> /"))

            // Writing through the links lands in the container's root, not the host's.
            let planted = "planted-\(getpid())"
            try writeBytes(Array("x".utf8), to: scratch.path + "/" + planted)
            for destination in ["/tmp/toroot/tmp/dir", "/tmp/up/tmp/up/tmp/dir"] {
                try container.copyIn(fromHostPath: scratch.path + "/" + planted, to: destination)
            }
            #expect(access(rootfs + "/tmp/dir/" + planted, F_OK) == 0)
            #expect(access("/tmp/dir/" + planted, F_OK) != 0)
            #expect(access("/tmp/" + planted, F_OK) != 0)
        } catch {
            try? await container.remove()
            throw error
        }
        try await container.remove()
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }
}

private func contents(_ path: String) throws -> String {
    let fd = try FileDescriptor.open(path, .readOnly)
    defer { try? fd.close() }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = try buffer.withUnsafeMutableBytes { try fd.read(into: $0) }
        if n == 0 { return String(decoding: bytes, as: UTF8.self) }
        bytes += buffer[0..<n]
    }
}

private func mode(_ path: String) throws -> mode_t {
    var st = stat()
    guard lstat(path, &st) == 0 else { throw TestSupportError("lstat \(path)") }
    return st.st_mode & 0o7777
}

private func linkTarget(_ path: String) throws -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink(path, &buffer, buffer.count - 1)
    guard n >= 0 else { throw TestSupportError("readlink \(path)") }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

private func names(_ directory: String) throws -> [String] {
    guard let dir = opendir(directory) else { throw TestSupportError("open \(directory)") }
    defer { closedir(dir) }
    var result: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { result.append(name) }
    }
    return result.sorted()
}
