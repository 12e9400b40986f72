import ContainerKernel
import Glibc
import Testing
import TestSupport

/// Every escape attempt fails under the defaults, and with the errno Docker users would see.
@Suite(.serialized)
struct EscapeTests {
    struct Attempt: CustomTestStringConvertible, Sendable {
        var arguments: [String]
        var allowed: Set<String>
        var testDescription: String { arguments.joined(separator: " ") }
    }

    static let denied: Set<String> = ["EPERM", "EACCES"]

    static let attempts: [Attempt] = [
        Attempt(arguments: ["mount-tmpfs", "/mnt"], allowed: denied),
        Attempt(arguments: ["umount", "/proc"], allowed: denied),
        Attempt(arguments: ["unshare-user"], allowed: denied),
        Attempt(arguments: ["reboot"], allowed: denied),
        Attempt(arguments: ["init-module"], allowed: denied),
        // /proc/sys is a read-only bind (Docker's default): the write fails as read-only.
        Attempt(arguments: ["write", "/proc/sys/kernel/hostname", "escaped"], allowed: denied.union(["EROFS"])),
        Attempt(arguments: ["mknod-block", "/tmp/sda"], allowed: denied),
        // /proc/kcore is masked (an empty read): ChildPathEscapeTests.interruptsAndKcoreAreMasked.
    ]

    @Test(arguments: attempts)
    func escapeFailsUnderTheDefaults(_ attempt: Attempt) async throws {
        var spec = try busyboxSpec([TestRootfs.probe] + attempt.arguments)
        spec.cgroup = CgroupPlacement(path: testCgroupPath("escape"))
        let result = try await runToEnd(spec)
        guard case .failed(let name, _)? = result.probe.result else {
            Issue.record("\(attempt.testDescription) was not refused: \(result.stdout) \(result.stderr)")
            return
        }
        #expect(attempt.allowed.contains(name), "\(attempt.testDescription): \(name)")
    }

    @Test func ptraceOfAHostProcessFails() async throws {
        // The host's pid 1 (and this test process) are invisible: attaching cannot reach them.
        for pid in ["1", "\(getpid())"] {
            let result = try await probe("ptrace", pid)
            guard case .failed(let name, _)? = result.probe.result else {
                Issue.record("ptrace \(pid) succeeded")
                continue
            }
            #expect(["EPERM", "ESRCH", "EACCES"].contains(name))
        }
    }

    @Test func hostnameOfTheHostIsUntouched() async throws {
        var before = [CChar](repeating: 0, count: 256)
        gethostname(&before, 255)
        _ = try await probe("write", "/proc/sys/kernel/hostname", "escaped")
        var after = [CChar](repeating: 0, count: 256)
        gethostname(&after, 255)
        #expect(before == after)
    }
}

/// The container-escape classes of issue 10, one row each, that reach the host through the
/// runtime's own child path (Documentation/Security.md has the table). Each failed on the code
/// before its fix.
@Suite(.serialized)
struct ChildPathEscapeTests {
    /// CVE-2019-5736 / CVE-2016-9962: a process in the container watches for the runtime's
    /// exec children and opens their /proc/<pid>/exe while they still run host code. A long
    /// PATH of missing directories widened that window by one failing execve per entry.
    @Test func execChildrenCannotBeOpenedFromTheContainer() async throws {
        let before = LeakSnapshot.take()
        let (text, execs) = try await watchExecs()
        #expect(!text.contains("hostexe=") && !text.contains("writableexe="),
                "a runtime child's host executable was opened: \(text)")
        let seen = ProbeOutput(text)["seen"].flatMap { Int($0) } ?? 0
        #expect(seen > 0, "the watcher saw no exec child: \(text), \(execs) execs")
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    /// Runs the watcher for 3 s and execs `true` into its container meanwhile, through a PATH
    /// of 300 missing directories; returns what the watcher printed and the number of execs.
    private func watchExecs() async throws -> (String, Int) {
        var main = try busyboxSpec([TestRootfs.probe, "watch-host", "3", "/bin/busybox"])
        main.cgroup = CgroupPlacement(path: testCgroupPath("watch"))
        let watcher = try await ProcessHandle.spawn(main)
        let output = Task { await watcher.standardOutput?.collect(limit: 1 << 20).text ?? "" }
        let path = (0..<300).map { "/missing/\($0)" }.joined(separator: ":") + ":/bin"
        var execs = 0
        try await Task.sleep(for: .milliseconds(100))
        while watcher.exitStatus == nil && execs < 2000 {
            var exec = try busyboxSpec(["true"], hostname: nil)
            exec.rootfs = nil
            exec.namespaces = []
            exec.joinNamespaces = NamespaceJoin.all([.pid, .mount, .uts, .ipc, .network, .cgroup], of: watcher)
            exec.joinCgroup = watcher.cgroup
            exec.environment = ["PATH=\(path)"]
            // When the watcher, pid 1 of the namespace, ends, the kernel kills an exec in flight.
            guard let result = try? await runToEnd(exec), result.status == .exited(0) else { break }
            execs += 1
        }
        #expect(try await watcher.wait() == .exited(0))
        return (await output.value, execs)
    }

    /// CVE-2019-5736 itself: a script whose interpreter is /proc/self/exe made the kernel load
    /// the runtime's own executable (here: this test binary) into the container, where it is
    /// dumpable and its /proc/<pid>/exe is the host file. The host's dynamic loader is put in
    /// the image so that the host binary would really start. The program is now exec'd from the
    /// sealed memfd of the embedded supervisor, so /proc/self/exe is that copy.
    @Test func aScriptInterpretedByProcSelfExeDoesNotRunTheHostBinary() async throws {
        let rootfs = try copyOfBusybox()
        defer { try? rootfs.remove() }
        let image = rootfs.path + "/rootfs"
        #expect(mkdir(image + "/lib64", 0o755) == 0)
        let loader = try runProgram(["/bin/cp", "-L", "/lib64/ld-linux-x86-64.so.2", image + "/lib64/"])
        #expect(loader.status == 0, "\(loader.output)")
        try "#!/proc/self/exe\n".write(toFile: image + "/entry")
        try "#!/bin/sh\necho script ran\n".write(toFile: image + "/control")
        #expect(chmod(image + "/entry", 0o755) == 0 && chmod(image + "/control", 0o755) == 0)

        var spec = try busyboxSpec(["/entry"])
        spec.rootfs = image
        let hostile = try await runToEnd(spec)
        #expect(!hostile.stderr.contains("error while loading shared libraries"),
                "the host's executable ran in the container: \(hostile.stderr)")
        spec.arguments = ["/control"]
        let control = try await runToEnd(spec)
        #expect(control.stdout == "script ran\n" && control.status == .exited(0), "\(control)")
    }

    /// A child's credential change makes a shared address space non-dumpable; the embedding
    /// process must not stay that way (its /proc files would turn root-owned, debuggers and
    /// core dumps would stop working).
    @Test func theHostProcessStaysDumpable() async throws {
        let before = ProcessHandle.callerDumpable
        let result = try await probe("ids") {
            $0.userID = 1000
            $0.groupID = 1000
        }
        #expect(result.probe["uid"] == "1000")
        #expect(ProcessHandle.callerDumpable == before)
    }

    /// CVE-2025-31133: the masks bound "/dev/null" by path after pivot_root; a /dev the caller
    /// or image chose could name anything there (here: a sysctl), turning a masked proc file
    /// into a writable sysctl. A bind over /dev is refused, and masks use the host's null device.
    @Test func aVolumeOverDevCannotRedirectTheMasks() async throws {
        let volume = try TemporaryDirectory(prefix: "dev-volume")
        defer { try? volume.remove() }
        #expect(symlink("/proc/sys/kernel/hostname", volume.path + "/null") == 0)
        let outcome = await attempt(["cat", "/proc/keys"]) {
            $0.mounts.append(.bind(volume.path, to: "/dev"))
        }
        #expect(outcome.refused(at: .mount) || !(outcome.output?.contains("berth-test") ?? false), "\(outcome)")
    }

    /// The same without a mount over /dev itself: the image's /dev is a symlink into a
    /// directory that a volume covers.
    @Test func anImageWhoseDevIsASymlinkIsRefused() async throws {
        let rootfs = try copyOfBusybox()
        defer { try? rootfs.remove() }
        let volume = try TemporaryDirectory(prefix: "dev-volume")
        defer { try? volume.remove() }
        #expect(symlink("/proc/sys/kernel/hostname", volume.path + "/null") == 0)
        try rmdirTree(rootfs.path + "/rootfs/dev")
        #expect(symlink("/data", rootfs.path + "/rootfs/dev") == 0)
        #expect(mkdir(rootfs.path + "/rootfs/data", 0o755) == 0)
        let outcome = await attempt(["cat", "/proc/keys"], rootfs: rootfs.path + "/rootfs") {
            $0.mounts.append(.bind(volume.path, to: "/data"))
        }
        #expect(outcome.refused(at: .mount) && outcome.error?.detail.contains("/dev resolves to /data") == true, "\(outcome)")
    }

    /// A bind target that a symlink in the image leads into /proc is refused: host content
    /// must not land on the kernel's files.
    @Test func aBindReachingProcThroughASymlinkIsRefused() async throws {
        let rootfs = try copyOfBusybox()
        defer { try? rootfs.remove() }
        let host = try TemporaryDirectory(prefix: "bind")
        defer { try? host.remove() }
        #expect(symlink("/proc/sys/kernel", rootfs.path + "/rootfs/data") == 0)
        let outcome = await attempt(["cat", "/proc/sys/kernel/hostname"], rootfs: rootfs.path + "/rootfs") {
            $0.mounts.append(.bind(host.path, to: "/data"))
        }
        #expect(outcome.refused(at: .mount), "\(outcome)")
    }

    /// A device the mount table left in /dev must be the device itself.
    @Test func anExistingNodeAtADevicePathMustBeThatDevice() async throws {
        let host = try TemporaryDirectory(prefix: "file")
        defer { try? host.remove() }
        try "not a device".write(toFile: host.path + "/null")
        let outcome = await attempt(["cat", "/dev/null"]) {
            $0.mounts.append(.bind(host.path + "/null", to: "/dev/null"))
        }
        #expect(outcome.refused(at: .devices), "\(outcome)")
    }

    /// CVE-2024-21626: a working directory of /proc/self/fd/N, N a directory fd the host
    /// process leaked, put the process outside its root before the fds were closed.
    @Test func aWorkingDirectoryThroughALeakedFdIsRefused() async throws {
        let leaked = open("/tmp", O_RDONLY | O_DIRECTORY)  // no O_CLOEXEC: the embedder's leak
        #expect(leaked >= 0)
        defer { close(leaked) }
        let outcome = await attempt(["cwd"]) { $0.workingDirectory = "/proc/self/fd/\(leaked)" }
        #expect(outcome.refused(at: .workingDirectory), "\(outcome)")
    }

    /// The same class through the program: argv[0] /proc/self/fd/N, N a host executable the
    /// host process has open, would run (and expose as /proc/<pid>/exe) a host file.
    @Test func aProgramThroughALeakedFdIsRefused() async throws {
        // Static, so that it would run in the container's root: the host's busybox-static.
        let leaked = open("/bin/busybox", O_RDONLY)
        #expect(leaked >= 0)
        defer { close(leaked) }
        let outcome = await attempt(["/proc/self/fd/\(leaked)"], program: true)
        #expect(outcome.refused(at: .exec), "\(outcome)")
    }

    /// A root filesystem without a mount namespace would be bind-mounted and pivoted on the host.
    @Test func aRootfsWithoutAMountNamespaceIsRefused() async throws {
        let outcome = await attempt(["ids"]) { $0.namespaces.remove(.mount) }
        #expect(outcome.error?.code == .invalidArgument, "\(outcome)")
    }

    /// The cgroup namespace is made after the container joined its cgroup, so it is rooted
    /// there: the container sees "/" as its cgroup, not the path on the host.
    @Test func theCgroupNamespaceIsRootedAtTheContainersCgroup() async throws {
        let result = try await probe("cat", "/proc/self/cgroup") {
            $0.cgroup = CgroupPlacement(path: testCgroupPath("cgroupns"))
        }
        let lines = result.stdout.split(separator: "\n")
        #expect(!lines.isEmpty)
        for line in lines {
            #expect(line.hasSuffix(":/"), "\(result.stdout)")
        }
    }

    /// Docker masks /proc/interrupts; /proc/kcore is masked whatever the capabilities.
    @Test func interruptsAndKcoreAreMasked() async throws {
        let interrupts = try await probe("cat", "/proc/interrupts")
        #expect(interrupts.stdout.isEmpty, "\(interrupts.stdout.prefix(200))")
        #expect(Mount.dockerMaskedPaths.contains("/proc/kcore"))
        if access("/proc/kcore", F_OK) == 0 {
            let kcore = try await probe("read", "/proc/kcore") {
                $0.capabilities = $0.capabilities.adding([.sysRawio], dropping: [])
            }
            #expect(kcore.probe["bytes"] == "0", "\(kcore.stdout)")
        }
    }

    /// A child killed during its init sequence (here by its own seccomp filter, on capset) was
    /// taken for started, since the socket's EOF was read as a successful execve.
    @Test func aChildKilledDuringInitIsAFailedSpawn() async throws {
        let outcome = await attempt(["ids"]) { $0.seccomp = .program(Self.filter(capset: 0x8000_0000, flags: 0)) }
        #expect(outcome.refused(at: .capabilities), "\(outcome)")
        #expect(outcome.error?.detail.contains("killed by signal \(SIGSYS)") == true, "\(outcome)")
    }

    /// A child stuck in its init sequence (here in a seccomp notification nobody answers)
    /// blocked the spawn, and every later spawn of the process, for ever.
    @Test func aStuckInitMeetsItsDeadlineAndLaterSpawnsGoOn() async throws {
        let before = LeakSnapshot.take()
        // SECCOMP_RET_USER_NOTIF with SECCOMP_FILTER_FLAG_NEW_LISTENER: capset waits for an answer.
        let outcome = await attempt(["ids"]) {
            $0.seccomp = .program(Self.filter(capset: 0x7fc0_0000, flags: 1 << 3))
            $0.initTimeout = .milliseconds(300)
            $0.cgroup = CgroupPlacement(path: testCgroupPath("stuck"))
        }
        #expect(outcome.error?.code == .timedOut, "\(outcome)")
        #expect(outcome.error?.stage == .capabilities, "\(outcome)")
        let next = try await probe("ids")
        #expect(next.status == .exited(0))
        #expect(await LeakSnapshot.expectClean(since: before).isEmpty)
    }

    // MARK: - Helpers

    struct Outcome: CustomStringConvertible {
        var error: KernelError?
        var output: String?
        func refused(at stage: InitStage) -> Bool { error?.stage == stage }
        var description: String { error.map { "refused: \($0) (stage \($0.stage.map(\.rawValue) ?? "none"))" } ?? "ran: \(output ?? "")" }
    }

    /// Runs the probe (or `arguments` as the program) and says whether the spawn was refused.
    func attempt(
        _ arguments: [String], program: Bool = false, rootfs: String? = nil,
        configure: (inout ProcessSpec) -> Void = { _ in }
    ) async -> Outcome {
        do {
            var spec = try busyboxSpec(program ? arguments : [TestRootfs.probe] + arguments)
            if let rootfs { spec.rootfs = rootfs }
            configure(&spec)
            let result = try await runToEnd(spec)
            return Outcome(error: nil, output: result.stdout + result.stderr)
        } catch let error as KernelError {
            return Outcome(error: error, output: nil)
        } catch {
            return Outcome(error: KernelError(code: .invalidState, detail: "\(error)"), output: nil)
        }
    }

    /// A filter that returns `action` for capset and allows everything else.
    static func filter(capset action: UInt32, flags: UInt32) -> SeccompProgram {
        #if arch(x86_64)
        let capset: UInt32 = 126
        #else
        let capset: UInt32 = 91
        #endif
        func instruction(_ code: UInt16, _ jt: UInt8, _ jf: UInt8, _ k: UInt32) -> [UInt8] {
            withUnsafeBytes(of: code.littleEndian, Array.init) + [jt, jf] + withUnsafeBytes(of: k.littleEndian, Array.init)
        }
        let bytes = instruction(0x20, 0, 0, 0)            // ld [0]: the syscall number
            + instruction(0x15, 0, 1, capset)              // jeq capset
            + instruction(0x06, 0, 0, action)              // ret action
            + instruction(0x06, 0, 0, 0x7fff_0000)         // ret SECCOMP_RET_ALLOW
        return SeccompProgram(bytes: bytes, flags: flags)
    }

    /// A private copy of the busybox test rootfs, to make hostile changes to.
    func copyOfBusybox() throws -> TemporaryDirectory {
        let directory = try TemporaryDirectory(prefix: "rootfs")
        let copy = try runProgram(["/bin/cp", "-a", try TestRootfs.busybox(), directory.path + "/rootfs"])
        guard copy.status == 0 else { throw TestSupportError("cp -a the busybox rootfs: \(copy.output)") }
        return directory
    }

    func rmdirTree(_ path: String) throws {
        let removal = try runProgram(["/bin/rm", "-rf", path])
        guard removal.status == 0 else { throw TestSupportError("rm -rf \(path): \(removal.output)") }
    }
}
