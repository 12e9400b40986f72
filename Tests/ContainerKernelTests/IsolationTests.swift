import ContainerKernel
import Glibc
import Testing
import TestSupport

@Suite(.serialized)
struct IsolationTests {
    @Test func processIsPidOneWithTheConfiguredHostname() async throws {
        let result = try await probe("status")
        #expect(result.status == .exited(0), "\(result.stderr)")
        #expect(result.probe["pid"] == "1")
        let host = try await probe("hostname")
        #expect(host.stdout.contains("berth-test"))
    }

    @Test func defaultCapabilitiesAndSeccompMatchDocker() async throws {
        let result = try await probe("status")
        #expect(result.probe["CapEff"] == "00000000a80425fb")
        #expect(result.probe["CapBnd"] == "00000000a80425fb")
        #expect(result.probe["Seccomp"] == "2")
        #expect(result.probe["NoNewPrivs"] == "0")
    }

    @Test(arguments: [true, false])
    func noNewPrivilegesIsAsConfigured(_ enabled: Bool) async throws {
        let result = try await probe("status") { $0.noNewPrivileges = enabled }
        #expect(result.probe["NoNewPrivs"] == (enabled ? "1" : "0"))
        #expect(result.probe["Seccomp"] == "2")
    }

    @Test func capabilitiesCanBeAddedAndDropped() async throws {
        let result = try await probe("status") {
            $0.capabilities = $0.capabilities.adding([.netAdmin], dropping: [.chown])
        }
        let expected = Capability.dockerDefault.union([.netAdmin]).subtracting([.chown])
        #expect(result.probe["CapEff"] == hex16(expected.reduce(0) { $0 | (1 << UInt64($1.rawValue)) }))
    }

    @Test func unconfinedSeccompShowsNoFilter() async throws {
        let result = try await probe("status") { $0.seccomp = .unconfined }
        #expect(result.probe["Seccomp"] == "0")
    }

    @Test func mountNamespaceShowsOnlyTheContainersMounts() async throws {
        let result = try await runToEnd(try busyboxSpec(["/bin/cat", "/proc/self/mountinfo"]))
        #expect(result.status == .exited(0))
        let targets = result.stdout.split(separator: "\n").map { $0.split(separator: " ")[4] }
        #expect(targets.first == "/")
        let allowed = ["/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"]
        for target in targets {
            let ok = allowed.contains(String(target)) || target.hasPrefix("/proc/") || target.hasPrefix("/sys/")
                || target.hasPrefix("/dev/")
            #expect(ok, "unexpected mount \(target)")
        }
        #expect(!result.stdout.contains("/work"))
    }

    @Test func hostProcessesAndInterfacesAreInvisible() async throws {
        let ps = try await runToEnd(try busyboxSpec(["/bin/ls", "/proc"]))
        let pids = ps.stdout.split(separator: "\n").filter { Int($0) != nil }
        #expect(pids == ["1"], "processes visible: \(pids)")
        let ifaces = try await probe("ifaces")
        #expect(ifaces.probe.values("iface") == ["lo"])
    }

    @Test func environmentWorkingDirectoryAndUserApply() async throws {
        let env = try await probe("env") { $0.environment.append("GREETING=hello") }
        #expect(env.stdout.contains("GREETING=hello"))
        let cwd = try await probe("cwd") { $0.workingDirectory = "/tmp" }
        #expect(cwd.probe["cwd"] == "/tmp" || cwd.stdout.contains("/tmp"))
        let ids = try await probe("ids") {
            $0.userID = 1000
            $0.groupID = 1000
            $0.additionalGroups = [10, 20]
        }
        #expect(ids.probe["uid"] == "1000")
        #expect(ids.probe["gid"] == "1000")
        #expect(ids.probe["groups"] == "10,20")
    }

    @Test func missingProgramIsATypedExecError() async throws {
        await #expect(throws: KernelError.self) { _ = try await ProcessHandle.spawn(try busyboxSpec(["/bin/nope"])) }
        do {
            _ = try await ProcessHandle.spawn(try busyboxSpec(["/bin/nope"]))
            Issue.record("spawn of /bin/nope succeeded")
        } catch let error as KernelError {
            #expect(error.stage == .exec)
            #expect(error.errno == .noSuchFileOrDirectory)
            #expect("\(error)" == "exec \"/bin/nope\": no such file or directory")
        }
        do {
            _ = try await ProcessHandle.spawn(try busyboxSpec(["nope"]))
            Issue.record("spawn of nope succeeded")
        } catch let error as KernelError {
            #expect("\(error)".contains("executable file not found in $PATH"))
        }
    }

    @Test func programIsFoundInThePath() async throws {
        let result = try await runToEnd(try busyboxSpec(["echo", "hello"]))
        #expect(result.stdout == "hello\n")
    }

    @Test func stdoutAndStderrAreSeparatePipesAndStdinIsWritable() async throws {
        let split = try await probe("write-stdout-stderr")
        #expect(split.stdout.contains("out"))
        #expect(split.stderr.contains("err"))

        var spec = try busyboxSpec(["/bin/cat"])
        spec.io.standardInput = .pipe
        let process = try await ProcessHandle.spawn(spec)
        try await process.standardInput?.write("through stdin\n")
        await process.standardInput?.close()
        let output = await process.standardOutput?.collect(limit: 1 << 20).text
        #expect(output == "through stdin\n")
        #expect(try await process.wait() == .exited(0))
    }

    @Test func terminalIsAllocatedInsideTheContainer() async throws {
        var spec = try busyboxSpec(["/bin/sh", "-c", "tty; stty size"])
        spec.io = ProcessIO(terminal: TerminalSize(rows: 33, columns: 101))
        let process = try await ProcessHandle.spawn(spec)
        let output = await process.terminal?.output.collect(limit: 1 << 20).text ?? ""
        #expect(output.contains("/dev/pts/0"), "\(output)")
        #expect(output.contains("33 101"), "\(output)")
        #expect(try await process.wait() == .exited(0))
    }

    @Test func exitCodesAndSignalsAreDistinct() async throws {
        #expect(try await probe("exit", "3").status == .exited(3))
        let sleeper = try await ProcessHandle.spawn(try busyboxSpec([TestRootfs.probe, "sleep", "30"]))
        try sleeper.signal(.kill)
        #expect(try await sleeper.wait() == .signaled(.kill, coreDumped: false))
    }

    @Test func readOnlyRootfsRefusesWrites() async throws {
        let result = try await probe("write", "/etc/x", "y") { $0.readOnlyRootfs = true }
        #expect(result.probe.result == .failed(name: "EROFS", code: 30))
    }

    @Test func bindAndTmpfsMountsApply() async throws {
        let host = try TemporaryDirectory(prefix: "bind")
        defer { try? host.remove() }
        try "from host".write(toFile: host.path + "/file")
        // Targets that the shared test rootfs has: a missing one would be created in it, and
        // every later test would see it.
        let result = try await probe("cat", "/mnt/file") {
            $0.mounts.append(.bind(host.path, to: "/mnt", readOnly: true))
            $0.mounts.append(.tmpfs("/home", data: "size=1m"))
        }
        #expect(result.stdout.contains("from host"))
        let write = try await probe("write", "/mnt/new", "x") {
            $0.mounts.append(.bind(host.path, to: "/mnt", readOnly: true))
        }
        #expect(write.probe.result == .failed(name: "EROFS", code: 30))
    }

    @Test func joiningANamespaceOfARunningProcessWorks() async throws {
        let first = try await ProcessHandle.spawn(try busyboxSpec([TestRootfs.probe, "sleep", "30"], hostname: "first"))
        defer { try? first.signal(.kill) }
        var spec = try busyboxSpec(["/bin/hostname"], hostname: nil)
        spec.rootfs = nil
        spec.namespaces = []
        spec.joinNamespaces = NamespaceJoin.all([.uts, .pid, .mount, .network, .ipc], of: first.pid)
        spec.seccomp = .unconfined
        let result = try await runToEnd(spec)
        #expect(result.stdout == "first\n", "\(result.stderr)")
        try first.signal(.kill)
        _ = try await first.wait()
    }
}

extension String {

    func write(toFile path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw TestSupportError("open \(path)") }
        defer { close(fd) }
        _ = Array(utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }
}

/// A capability mask as `/proc/<pid>/status` prints it: 16 hex digits.
func hex16(_ value: UInt64) -> String {
    let hex = String(value, radix: 16)
    return String(repeating: "0", count: max(0, 16 - hex.count)) + hex
}
