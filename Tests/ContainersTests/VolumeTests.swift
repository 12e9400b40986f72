import ContainerKernel
import Containers
import Foundation
import Glibc
import Testing
import TestSupport

/// Named volumes: data shared between containers, Docker's copy-up of image content, read-only
/// mounts, removal refused while in use, prune, and name validation.
@Suite(.serialized)
struct VolumeTests {
    /// A volume name no earlier run of the suite used.
    func uniqueName(_ prefix: String) -> String { "\(prefix)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))" }

    /// The leak snapshot every test starts from, taken once the volumes directory and its lock
    /// exist (the first volume operation of the root creates them, and keeps them).
    func snapshot(_ runtime: ContainerRuntime) throws -> LeakSnapshot {
        let warm = try runtime.createVolume(name: uniqueName("warm"))
        try runtime.removeVolume(warm.name)
        return LeakSnapshot.take(stateDirectories: [runtime.root + "/containers", runtime.root + "/volumes"])
    }

    /// Runs `body` on the shared runtime, then checks that it leaked nothing: mounts, cgroups,
    /// fds, processes, container directories, volumes.
    func leakChecked(_ body: (ContainerRuntime) async throws -> Void) async throws {
        let runtime = try await TestRuntime.shared()
        let before = try snapshot(runtime)
        try await body(runtime)
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    /// Runs `command` to its end with `mounts` and returns its exit status and output.
    func run(_ runtime: ContainerRuntime, _ command: [String], mounts: [ContainerMount]) async throws
        -> (status: ContainerKernel.ExitStatus, output: String)
    {
        let container = try await runtime.run(busybox(command) { $0.mounts = mounts })
        let status = try await container.wait()
        let output = await collect(container.logs()).map(\.log).joined()
        try await container.remove()
        return (status, output)
    }

    @Test func dataWrittenByOneContainerIsReadByAnother() async throws {
        try await leakChecked { runtime in
            let volume = try runtime.createVolume(name: uniqueName("shared"), labels: ["suite": "volumes"])
            #expect(volume.mountpoint == runtime.root + "/volumes/\(volume.name)/_data")
            #expect(try runtime.volume(volume.name) == volume)
            #expect(try runtime.volumes().contains(volume))
            #expect(try runtime.createVolume(name: volume.name, labels: ["other": "x"]) == volume, "an existing volume is returned")

            let mount = ContainerMount.volume(name: volume.name, target: "/data", readOnly: false)
            let writer = try await run(runtime, ["/bin/sh", "-c", "echo from-writer > /data/note"], mounts: [mount])
            #expect(writer.status == .exited(0), "\(writer.output)")
            let reader = try await run(runtime, ["/bin/cat", "/data/note"], mounts: [mount])
            #expect(reader.status == .exited(0))
            #expect(reader.output == "from-writer\n")
            #expect((try? String(contentsOfFile: volume.mountpoint + "/note", encoding: .utf8)) == "from-writer\n")

            try runtime.removeVolume(volume.name)
            #expect(throws: ContainerError.self) { _ = try runtime.volume(volume.name) }
        }
    }

    @Test func anEmptyNewVolumeIsFilledWithTheImagesContentOnce() async throws {
        try await leakChecked { runtime in
            let name = uniqueName("etc")  // created by the first container that mounts it
            let mount = ContainerMount.volume(name: name, target: "/etc", readOnly: false)

            let first = try await run(runtime, ["/bin/sh", "-c", "cat /etc/passwd; echo changed > /etc/passwd; cat /etc/hostname"],
                                      mounts: [mount])
            #expect(first.status == .exited(0), "\(first.output)")
            #expect(first.output.hasPrefix("root:"), "\(first.output)")
            let volume = try runtime.volume(name)
            let copied = try String(contentsOfFile: volume.mountpoint + "/passwd", encoding: .utf8)
            #expect(copied == "changed\n")
            // The runtime's own /etc/hostname is mounted over the volume, not hidden by it.
            #expect(first.output.split(separator: "\n").last?.count == 12, "\(first.output)")

            // The second container sees the first one's change, not a fresh copy; a volume the
            // user emptied is not filled again either.
            let second = try await run(runtime, ["/bin/sh", "-c", "cat /etc/passwd; rm /etc/passwd; rm -f /etc/group"],
                                       mounts: [mount])
            #expect(second.output.hasPrefix("changed\n"), "\(second.output)")
            let third = try await run(runtime, ["/bin/sh", "-c", "test -e /etc/passwd && echo refilled || echo gone"],
                                      mounts: [mount])
            #expect(third.output == "gone\n")

            try runtime.removeVolume(name)
        }
    }

    /// Commits the test image plus what `script` changes as a new image, creates a container
    /// of it with a new volume at `target` (which copies up), and gives `body` the volume's
    /// data directory; removes all of it afterwards.
    func copyingUp(_ script: String, at target: String, _ body: (String) throws -> Void) async throws {
        try await leakChecked { runtime in
            let setup = try await runtime.run(busybox(["/bin/sh", "-c", script]))
            #expect(try await setup.wait() == .exited(0))
            let reference = "copy-up-\(getpid()):\(UInt32.random(in: 0...UInt32.max))"
            _ = try await setup.commit(as: reference)
            try await setup.remove()

            let name = uniqueName("copy-up")
            let container = try await runtime.create(busybox(["/bin/true"]) {
                $0.image = reference
                $0.mounts = [.volume(name: name, target: target, readOnly: false)]
            })
            try body(try runtime.volume(name).mountpoint)
            try await container.remove()
            try runtime.removeVolume(name)
            _ = try runtime.removeImage(reference)
        }
    }

    @Test func copyUpKeepsOwnersModesAndSymlinks() async throws {
        // An owned file, a setgid directory and symlinks, one of them absolute (it must stay a
        // link, not be followed on the host).
        let script = """
            mkdir -p /srv/app/sub && echo x > /srv/app/file && chown 1234:5678 /srv/app/file && chmod 0640 /srv/app/file \
            && chmod 2750 /srv/app/sub && ln -s /etc/passwd /srv/app/abs && ln -s file /srv/app/rel \
            && chown 99:98 /srv/app && chmod 0701 /srv/app
            """
        try await copyingUp(script, at: "/srv/app") { data in
            var st = stat()
            #expect(lstat(data + "/file", &st) == 0)
            #expect(st.st_uid == 1234 && st.st_gid == 5678 && st.st_mode & 0o7777 == 0o640)
            #expect(lstat(data + "/sub", &st) == 0 && st.st_mode & 0o7777 == 0o2750)
            #expect(lstat(data, &st) == 0 && st.st_uid == 99 && st.st_gid == 98 && st.st_mode & 0o7777 == 0o701,
                    "the volume's root takes the image directory's owner and mode")
            #expect(lstat(data + "/abs", &st) == 0 && st.st_mode & S_IFMT == S_IFLNK)
            var target = [CChar](repeating: 0, count: 256)
            let length = readlink(data + "/abs", &target, target.count - 1)
            #expect(String(decoding: target[0..<max(0, length)].map { UInt8(bitPattern: $0) }, as: UTF8.self) == "/etc/passwd")
        }
    }

    @Test func aVolumeMountedOverASymlinkOutOfTheRootCopiesFromInsideTheRoot() async throws {
        // /escape → /../../../etc resolves to the container's /etc, never the host's.
        try await copyingUp("ln -s /../../../etc /escape && echo mark > /etc/in-image", at: "/escape") { data in
            #expect((try? String(contentsOfFile: data + "/in-image", encoding: .utf8)) == "mark\n",
                    "the container's /etc was copied")
        }
    }

    @Test func aReadOnlyVolumeRefusesWrites() async throws {
        try await leakChecked { runtime in
            let volume = try runtime.createVolume(name: uniqueName("ro"))
            let result = try await run(runtime, ["/bin/sh", "-c", "echo x > /data/file"],
                                       mounts: [.volume(name: volume.name, target: "/data", readOnly: true)])
            #expect(result.status == .exited(1) || result.status == .exited(2))
            #expect(result.output.contains("Read-only file system"), "\(result.output)")
            #expect(access(volume.mountpoint + "/file", F_OK) != 0)
            try runtime.removeVolume(volume.name)
        }
    }

    @Test func removalIsRefusedWhileAContainerMountsTheVolumeEvenWithForce() async throws {
        try await leakChecked { runtime in
            let volume = try runtime.createVolume(name: uniqueName("busy"))
            let container = try await runtime.create(busybox(["/bin/true"]) {
                $0.name = "volume-user-\(getpid())"
                $0.mounts = [.volume(name: volume.name, target: "/data", readOnly: false)]
            })
            for force in [false, true] {
                let error = #expect(throws: ContainerError.self) { try runtime.removeVolume(volume.name, force: force) }
                #expect(error?.code == .inUse)
                #expect(error?.container == container.name)
                #expect("\(error.map { "\($0)" } ?? "")".contains(volume.name))
            }
            #expect(try runtime.volume(volume.name) == volume)
            try await container.remove()
            try runtime.removeVolume(volume.name)

            let missing = #expect(throws: ContainerError.self) { try runtime.removeVolume(volume.name) }
            #expect(missing?.code == .notFound)
            try runtime.removeVolume(volume.name, force: true)
        }
    }

    @Test func pruneRemovesOnlyTheVolumesNoContainerUses() async throws {
        try await leakChecked { runtime in
            let used = try runtime.createVolume(name: uniqueName("kept"))
            let unused = try runtime.createVolume(name: uniqueName("pruned"))
            let generated = try runtime.createVolume()
            #expect(generated.name.count == 64 && generated.name.allSatisfy(\.isHexDigit))
            let container = try await runtime.create(busybox(["/bin/true"]) {
                $0.mounts = [.volume(name: used.name, target: "/data", readOnly: true)]
            })
            let pruned = try runtime.pruneVolumes()
            #expect(pruned.contains(unused.name) && pruned.contains(generated.name))
            #expect(!pruned.contains(used.name))
            #expect(try runtime.volumes().contains(used))
            try await container.remove()
            #expect(try runtime.pruneVolumes().contains(used.name))
            #expect(try runtime.volumes().allSatisfy { $0.name != used.name })
        }
    }

    @Test func theNextRuntimeRemovesWhatADeadProcessLeftInTheVolumesDirectory() async throws {
        try await leakChecked { runtime in
            let directory = runtime.root + "/volumes"
            // A copy-up of a process that is gone (pid 0 never matches), a removal cut short,
            // and a copy-up this process is making (it must stay).
            let leftovers = [directory + "/.copy-0-1-dead", directory + "/.removing-cut"]
            let ongoing = directory + "/.copy-\(getpid())-\(processStartTime(getpid()) ?? 0)-live"
            for path in leftovers + [ongoing] {
                #expect(mkdir(path, 0o755) == 0)
                #expect(mkdir(path + "/sub", 0o755) == 0)
            }
            _ = try ContainerRuntime(root: runtime.root)
            for path in leftovers { #expect(access(path, F_OK) != 0, "\(path)") }
            #expect(access(ongoing, F_OK) == 0)
            #expect(rmdir(ongoing + "/sub") == 0 && rmdir(ongoing) == 0)
        }
    }

    /// Names outside Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, including ones that would be paths.
    static let invalidNames = ["", ".", "..", "../escape", "a/b", "/abs", "-dash", "_under", ".hidden", "sp ace", "ünï", "a:b"]

    @Test(arguments: invalidNames)
    func invalidNamesAreRefusedEverywhere(_ name: String) async throws {
        try await leakChecked { runtime in
            let attempts: [() throws -> Void] = [
                { _ = try runtime.createVolume(name: name) }, { _ = try runtime.volume(name) },
                { try runtime.removeVolume(name, force: true) },
            ]
            for attempt in attempts {
                let error = #expect(throws: ContainerError.self) { try attempt() }
                #expect(error?.code == .invalidArgument, "\(String(describing: error))")
            }
            let created = await #expect(throws: ContainerError.self) {
                _ = try await runtime.create(busybox(["/bin/true"]) { $0.mounts = [.volume(name: name, target: "/data", readOnly: false)] })
            }
            #expect(created?.code == .invalidArgument, "\(String(describing: created))")
        }
    }
}
