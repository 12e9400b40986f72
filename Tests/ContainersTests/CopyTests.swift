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
        try await withContainer({ try await $0.run(busybox(["/bin/probe", "sleep", "30"])) }) { container, scratch in
            try copyIn(Self.tree, to: "/tmp", of: container, scratch: scratch)

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
            let listing = try runProgram(["tar", "-tvf", try copyOut("/tmp/tree", of: container, scratch: scratch)])
            #expect(listing.status == 0, "\(listing.output)")
            let lines = listing.output.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true) }
            let modes = Dictionary(lines.map { (String($0[5]), String($0[0])) }, uniquingKeysWith: { first, _ in first })
            #expect(modes == ["tree/": "drwxr-x---", "tree/link": "lrwxrwxrwx", "tree/run.sh": "-rwxr-xr-x",
                              "tree/secret": "-rw-------", "tree/sub/": "drwx------", "tree/sub/deep.txt": "-rw-r-----"],
                    "\(listing.output)")
            #expect(listing.output.contains("tree/link -> run.sh"))

            // Out to a host directory: cp's rules put it under its own name.
            try container.copyOut("/tmp/tree", toHostPath: scratch)
            #expect(try contents(scratch + "/tree/sub/deep.txt") == "deep inside\n")
            #expect(try mode(scratch + "/tree") == 0o750)
            #expect(try mode(scratch + "/tree/secret") == 0o600)
            #expect(try linkTarget(scratch + "/tree/link") == "run.sh")

            // In from a host path to a new name, then visible inside under that name.
            try container.copyIn(fromHostPath: scratch + "/tree", to: "/srv-copy")
            #expect(try await container.exec(["cat", "/srv-copy/secret"]).standardOutput == "hidden\n")
        }
    }

    /// A running container is copied as it sees itself: its mounts (a tmpfs, the runtime's
    /// /etc/hostname) are in the copy, the kernel's file systems only as their mount points.
    @Test func aRunningContainersMountsAreCopiedAsItSeesThem() async throws {
        try await withContainer({ runtime in
            try await runtime.run(busybox(["/bin/probe", "sleep", "30"]) { $0.mounts = [.tmpfs(target: "/scratch", options: nil)] })
        }) { container, scratch in
            _ = try await container.exec(["sh", "-c", "echo in-tmpfs > /scratch/note"])
            try container.copyOut("/scratch/note", toHostPath: scratch + "/note")
            #expect(try contents(scratch + "/note") == "in-tmpfs\n")
            try container.copyOut("/etc/hostname", toHostPath: scratch + "/hostname")
            #expect(try contents(scratch + "/hostname") == String(container.id.prefix(12)) + "\n")
            try copyIn([.file("from-host", "copied\n", mode: 0o644)], to: "/scratch", of: container, scratch: scratch)
            #expect(try await container.exec(["cat", "/scratch/from-host"]).standardOutput == "copied\n")

            let listing = try runProgram(["tar", "-tf", try copyOut("/", of: container, scratch: scratch)])
            #expect(listing.status == 0, "\(listing.output)")
            let names = listing.output.split(separator: "\n").map { String($0.drop { $0 == "." || $0 == "/" }) }
            #expect(names.contains("scratch/note") && names.contains("etc/passwd"), "\(names.prefix(40))")
            #expect(names.contains("proc/") && names.contains("sys/"), "\(names.prefix(40))")
            #expect(!names.contains { ($0.hasPrefix("proc/") || $0.hasPrefix("sys/")) && $0.count > 5 },
                    "\(names.filter { $0.hasPrefix("proc/") || $0.hasPrefix("sys/") }.prefix(10))")
        }
    }

    @Test(arguments: [ContainerLifecycleTests.State.created, .paused, .exited], ContainerLifetime.allCases)
    func aFileCopiesOutInEveryStateWithARootFilesystem(_ state: ContainerLifecycleTests.State, _ lifetime: ContainerLifetime)
        async throws
    {
        try await withContainer({ _ in try await ContainerLifecycleTests().container(in: state, lifetime: lifetime) }) {
            container, scratch in
            let archive = try copyOut("/etc/passwd", of: container, scratch: scratch)
            #expect(try runProgram(["tar", "-tf", archive]).output == "passwd\n")
            let content = try runProgram(["tar", "-xOf", archive, "passwd"])
            #expect(content.output == (try contents(TestRootfs.busybox() + "/etc/passwd")))
        }
    }

    @Test func aMissingPathIsATypedErrorNamingTheContainerAndThePath() async throws {
        try await withContainer({ try await $0.create(busybox(["/bin/true"])) }) { container, _ in
            let sink = try FileDescriptor.open("/dev/null", .writeOnly)
            defer { try? sink.close() }
            let empty = try FileDescriptor.open("/dev/null", .readOnly)
            defer { try? empty.close() }

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

            let noHostDirectory = #expect(throws: ContainerError.self) {
                try container.copyOut("/etc/passwd", toHostPath: "/nonexistent-berth-\(getpid())/passwd")
            }
            #expect(noHostDirectory?.code == .notFound)
            let directoryOntoFile = #expect(throws: ContainerError.self) {
                try container.copyOut("/etc", toHostPath: "/dev/null")
            }
            #expect(directoryOntoFile?.code == .invalidArgument)
        }
    }

    @Test(arguments: [false, true])
    func ownersComeFromTheArchiveOnlyWhenAsked(_ preservingOwners: Bool) async throws {
        try await withContainer({ try await $0.create(busybox(["/bin/true"])) }) { container, scratch in
            try TarFixture.write([.directory("owned", uid: 1234, gid: 4321), .file("owned/f", "x", uid: 1234, gid: 4321)],
                                 to: scratch + "/owned.tar")
            let input = try FileDescriptor.open(scratch + "/owned.tar", .readOnly)
            defer { try? input.close() }
            try container.copyIn(from: input, to: "/tmp", preservingOwners: preservingOwners)
            for path in ["/tmp/owned", "/tmp/owned/f"] {
                var st = stat()
                #expect(lstat(container.directory + "/rootfs" + path, &st) == 0)
                #expect(st.st_uid == (preservingOwners ? 1234 : getuid()), "\(path)")
                #expect(st.st_gid == (preservingOwners ? 4321 : getgid()), "\(path)")
            }
        }
    }

    @Test func aReadOnlyRootFilesystemRefusesCopiesInButNotOut() async throws {
        let readOnly = busybox(["/bin/true"]) { $0.readOnlyRootfs = true }
        try await withContainer({ try await $0.create(readOnly) }) { container, scratch in
            let refused = #expect(throws: ContainerError.self) {
                try copyIn([.file("new", "x")], to: "/tmp", of: container, scratch: scratch)
            }
            #expect(refused?.code == .invalidArgument)
            #expect(access(container.directory + "/rootfs/tmp/new", F_OK) != 0)
            #expect(throws: ContainerError.self) { try container.copyIn(fromHostPath: scratch + "/in.tar", to: "/tmp") }
            try container.copyOut("/etc/passwd", toHostPath: scratch)
            #expect(try contents(scratch + "/passwd") == (try contents(TestRootfs.busybox() + "/etc/passwd")))
        }
    }

    /// As Docker: a read-only root filesystem still takes copies into its writable mounts
    /// while it runs, and nowhere else.
    @Test func copyInOnAReadOnlyRootFilesystemWritesItsTmpfsOnly() async throws {
        let configuration = busybox(["/bin/probe", "sleep", "30"]) {
            $0.readOnlyRootfs = true
            $0.mounts = [.tmpfs(target: "/scratch", options: nil)]
        }
        try await withContainer({ try await $0.run(configuration) }) { container, scratch in
            let file = scratch + "/note"
            try writeBytes(Array("in the tmpfs\n".utf8), to: file)
            try container.copyIn(fromHostPath: file, to: "/scratch")
            #expect(try await container.exec(["cat", "/scratch/note"]).standardOutput == "in the tmpfs\n")
            for outside in ["/etc", "/scratch/../etc", "/"] {
                let refused = #expect(throws: ContainerError.self) { try container.copyIn(fromHostPath: file, to: outside) }
                #expect(refused?.code == .invalidArgument, "\(outside)")
            }
            #expect(access(container.directory + "/rootfs/etc/note", F_OK) != 0)
            // Stopped, the tmpfs is gone: the copy is refused rather than written beneath it.
            _ = try await container.stop(timeout: .seconds(1))
            let stopped = #expect(throws: ContainerError.self) { try container.copyIn(fromHostPath: file, to: "/scratch") }
            #expect(stopped?.code == .invalidState)
            #expect(access(container.directory + "/rootfs/scratch/note", F_OK) != 0)
        }
    }

    /// `creatingParents` makes the missing directories above the destination, as `mkdir -p`
    /// run inside the container would: through a symlink they land where the link leads inside
    /// the root, never on the host, and a file in the way is refused.
    @Test func copyInCreatingParentsMakesTheDirectoriesInsideTheRootOnly() async throws {
        try await withContainer({ try await $0.run(busybox(["/bin/probe", "sleep", "30"])) }) { container, scratch in
            let file = scratch + "/index.html"
            try writeBytes(Array("made\n".utf8), to: file)
            let missing = #expect(throws: ContainerError.self) { try container.copyIn(fromHostPath: file, to: "/www/site/index.html") }
            #expect(missing?.code == .notFound)

            try container.copyIn(fromHostPath: file, to: "/www/site/index.html", creatingParents: true)
            #expect(try await container.exec(["sh", "-c", "cat /www/site/index.html; stat -c '%a' /www /www/site"]).standardOutput
                == "made\n755\n755\n")

            // A link climbing out of the root to a directory that exists on the host and, under
            // the same path, in the container; and a link to a directory of the image.
            let host = scratch + "/host"
            #expect(mkdir(host, 0o755) == 0)
            _ = try await container.exec(["sh", "-c", "mkdir -p \(host); ln -s /../../../../../../..\(host) /tmp/out; ln -s /etc /tmp/in"])
            try container.copyIn(fromHostPath: file, to: "/tmp/out/made/index.html", creatingParents: true)
            #expect(access(host + "/made", F_OK) != 0, "a directory was made on the host")
            #expect(try await container.exec(["cat", "\(host)/made/index.html"]).standardOutput == "made\n")
            try container.copyIn(fromHostPath: file, to: "/tmp/in/site/index.html", creatingParents: true)
            #expect(try await container.exec(["cat", "/etc/site/index.html"]).standardOutput == "made\n")

            let inTheWay = #expect(throws: ContainerError.self) {
                try container.copyIn(fromHostPath: file, to: "/etc/passwd/site/index.html", creatingParents: true)
            }
            #expect(inTheWay?.code == .invalidArgument)
        }
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
        try await withContainer({ try await $0.create(busybox(["/bin/true"])) }) { container, scratch in
            let host = try TemporaryDirectory(prefix: "cp-host")
            defer { try? host.remove() }
            try writeBytes(Array("untouched\n".utf8), to: host.path + "/victim")
            let rootfs = container.directory + "/rootfs"
            let siblings = try names(container.directory)
            do {
                try copyIn(hostile.entries(host.path), to: "/tmp", of: container, scratch: scratch)
                #expect(!hostile.refused, "\(hostile) was not refused")
            } catch let error as ContainerError {
                #expect(hostile.refused, "\(hostile): \(error)")
                #expect(error.code == .layer, "\(error)")
            }
            #expect(try names(host.path) == ["victim"])
            #expect(try contents(host.path + "/victim") == "untouched\n")
            var st = stat()
            #expect(lstat(host.path + "/victim", &st) == 0 && st.st_nlink == 1)
            #expect(try names(container.directory) == siblings, "nothing beside the root filesystem")
            #expect(access(rootfs + "/escape", F_OK) != 0)
            if let contained = hostile.contained { #expect(access(rootfs + "/" + contained, F_OK) == 0) }
        }
    }

    @Test func symlinksInTheContainerResolveInsideItsRoot() async throws {
        try await withContainer({ try await $0.create(busybox(["/bin/true"])) }) { container, scratch in
            let rootfs = container.directory + "/rootfs"
            try copyIn([.symlink("toroot", to: "/"), .symlink("up", to: "../.."), .directory("dir")], to: "/tmp",
                       of: container, scratch: scratch)

            // Reading through the links gives the container's /etc/passwd, never the host's.
            let image = try contents(TestRootfs.busybox() + "/etc/passwd")
            #expect(image != (try? contents("/etc/passwd")))
            for path in ["/tmp/toroot/etc/passwd", "/tmp/up/etc/passwd", "/tmp/up/tmp/up/etc/passwd", "/../../etc/passwd"] {
                try container.copyOut(path, toHostPath: scratch + "/passwd")
                #expect(try contents(scratch + "/passwd") == image, "\(path)")
            }

            // A symlink as the last component is copied as the symlink.
            let archive = try copyOut("/tmp/toroot", of: container, scratch: scratch)
            #expect(try runProgram(["tar", "-tvf", archive]).output.contains("toroot -> /"))

            // Followed (`-L`), a symlink to a symlink to a file is copied as the file, under the
            // first link's name; an absolute target resolves inside the container.
            try copyIn([.symlink("pw", to: "/tmp/up/etc/passwd"), .symlink("pw2", to: "pw")], to: "/tmp", of: container,
                       scratch: scratch)
            try container.copyOut("/tmp/pw2", toHostPath: scratch + "/followed", followingLink: true)
            #expect(try contents(scratch + "/followed") == image)
            try container.copyOut("/tmp/pw2", toHostPath: scratch + "/unfollowed")
            #expect(try linkTarget(scratch + "/unfollowed") == "pw")

            // Writing through the links lands in the container's root, not the host's.
            let planted = "planted-\(getpid())"
            try writeBytes(Array("x".utf8), to: scratch + "/" + planted)
            for destination in ["/tmp/toroot/tmp/dir", "/tmp/up/tmp/up/tmp/dir"] {
                try container.copyIn(fromHostPath: scratch + "/" + planted, to: destination)
            }
            #expect(access(rootfs + "/tmp/dir/" + planted, F_OK) == 0)
            #expect(access("/tmp/dir/" + planted, F_OK) != 0)
            #expect(access("/tmp/" + planted, F_OK) != 0)
        }
    }
}

/// Runs `body` with the container `make` creates on the test runtime and a scratch directory
/// on the host, removes both whatever happens, and checks that nothing leaked.
func withContainer(
    _ make: (ContainerRuntime) async throws -> Container, _ body: (Container, _ scratch: String) async throws -> Void
) async throws {
    let runtime = try await TestRuntime.shared()
    let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
    let scratch = try TemporaryDirectory(prefix: "cp")
    defer { try? scratch.remove() }
    let container = try await make(runtime)
    do {
        try await body(container, scratch.path)
    } catch {
        try? await container.remove(force: true)
        throw error
    }
    try await container.remove(force: true)
    let leaks = await LeakSnapshot.expectClean(since: before)
    #expect(leaks.isEmpty, "\(leaks)")
}

/// Copies a tar of `entries` into the directory `path` of the container.
private func copyIn(_ entries: [TarEntry], to path: String, of container: Container, scratch: String) throws {
    try TarFixture.write(entries, to: scratch + "/in.tar")
    let input = try FileDescriptor.open(scratch + "/in.tar", .readOnly)
    defer { try? input.close() }
    try container.copyIn(from: input, to: path)
}

/// Copies `path` out of the container as a tar file in `scratch`; returns the file's path.
private func copyOut(_ path: String, of container: Container, scratch: String) throws -> String {
    let archive = scratch + "/out.tar"
    let output = try FileDescriptor.open(archive, .writeOnly, options: [.create, .truncate], permissions: .ownerReadWrite)
    defer { try? output.close() }
    try container.copyOut(path, to: output)
    return archive
}

/// The whole file at `path` as text.
func contents(_ path: String) throws -> String {
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
