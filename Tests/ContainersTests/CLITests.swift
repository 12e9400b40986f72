import Containers
import ContainerKernel
import Foundation
import Testing
import TestSupport

/// The `berth` example CLI, run as a separate process on the test runtime's root, as a user
/// runs it: output, Docker's exit codes, and what one invocation sees of another's containers.
@Suite(.serialized)
struct CLITests {
    struct Outcome {
        var status: Int32
        var output: String
        var error: String
    }

    /// The `berth` executable that `swift build --build-tests` put next to the test bundle.
    static let executable: String? = {
        let bundleDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
        return [bundleDirectory + "/berth", FileManager.default.currentDirectoryPath + "/.build/debug/berth"]
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    /// Starts `berth SUBCOMMAND --root ROOT ARGUMENTS…` with stdio on /dev/null and returns
    /// at once: an owner process that a test can outlive, wait for or kill.
    static func launch(_ arguments: [String], root: String) throws -> Process {
        let executable = try #require(executable, "build berth first: swift build --build-tests")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [arguments[0], "--root", root] + arguments.dropFirst()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Runs `berth --root <test root> ARGUMENTS…` to its end, with `input` on its stdin; through
    /// `wrapper` (a command that ends by running its arguments) when given.
    func berth(_ arguments: [String], input: String? = nil, wrapper: [String] = []) async throws -> Outcome {
        let runtime = try await TestRuntime.shared()
        let executable = try #require(Self.executable, "build berth first: swift build --build-tests")
        let process = Process()
        // `--root` belongs to the subcommand: `berth run --root R …`, `berth system prune --root R …`
        // (the `system` group, unlike the others, holds no options of its own).
        let depth = arguments.first == "system" ? 2 : 1
        let command = [executable] + arguments.prefix(depth) + ["--root", runtime.root] + arguments.dropFirst(depth)
        process.executableURL = URL(fileURLWithPath: (wrapper + command)[0])
        process.arguments = Array((wrapper + command).dropFirst())
        let output = Pipe(), error = Pipe()
        process.standardOutput = output
        process.standardError = error
        let stdin = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : stdin
        try process.run()
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try stdin.fileHandleForWriting.close()
        }
        // Read both pipes to their end before waiting, so a full pipe cannot stall berth.
        async let out = Task.detached { output.fileHandleForReading.readDataToEndOfFile() }.value
        async let err = Task.detached { error.fileHandleForReading.readDataToEndOfFile() }.value
        let (outData, errData) = await (out, err)
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus, output: String(decoding: outData, as: UTF8.self),
                       error: String(decoding: errData, as: UTF8.self))
    }

    /// `berth run --rm ARGUMENTS`, its exit status and its output.
    static let runs: [([String], Int32, String)] = [
        (["busybox", "echo", "hello"], 0, "hello\n"),
        (["busybox", "sh", "-c", "echo out; exit 3"], 3, "out\n"),
        (["busybox", "false"], 1, ""),
        (["-e", "GREETING=hi", "busybox", "sh", "-c", "echo $GREETING $FROM_IMAGE"], 0, "hi yes\n"),
    ]

    @Test(arguments: runs)
    func runRemovePrintsTheOutputAndExitsWithTheContainersCode(arguments: [String], status: Int32, output: String) async throws {
        let result = try await berth(["run", "--rm"] + arguments)
        #expect(result.status == status, "\(result.error)")
        #expect(result.output == output)
    }

    /// The sandbox flags reach the container: `--ulimit`, `--sysctl`, `--oom-score-adj` and
    /// `--userns-remap`, each read back inside it; a malformed one is refused before anything runs.
    @Test func sandboxFlagsAreSeenInsideTheContainer() async throws {
        let result = try await berth([
            "run", "--rm", "--ulimit", "nofile=256:512", "--sysctl", "net.ipv4.ip_unprivileged_port_start=80",
            "--oom-score-adj", "500", "--userns-remap", "200000:65536", "busybox", "sh", "-c",
            "ulimit -n; ulimit -Hn; cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/self/oom_score_adj /proc/self/uid_map",
        ])
        #expect(result.status == 0, "\(result.error)")
        let fields = result.output.split(whereSeparator: \.isWhitespace)
        #expect(fields == ["256", "512", "80", "500", "0", "200000", "65536"], "\(result.output)")
        for bad in [["--ulimit", "nofiles=1"], ["--ulimit", "nofile=x"], ["--userns-remap", "root"]] {
            let refused = try await berth(["run", "--rm"] + bad + ["busybox", "true"])
            #expect(refused.status != 0 && refused.error.contains(bad[0]), "\(bad): \(refused.error)")
        }
    }

    @Test func runInteractivePassesStdinToTheContainer() async throws {
        let result = try await berth(["run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z; echo done"], input: "hello\n")
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output == "HELLO\ndone\n")
    }

    @Test func runKeepsStdoutAndStderrApart() async throws {
        let result = try await berth(["run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2"])
        #expect(result.status == 0)
        #expect(result.output == "out\n")
        #expect(result.error == "err\n")
    }

    /// `berth run --rm ARGUMENTS` that fail, and Docker's exit status for each.
    static let failures: [([String], Int32)] = [
        (["busybox", "/bin/nope"], 127),
        (["busybox", "/etc/passwd"], 126),
        (["--pull", "never", "berth-test/unknown:latest"], 125),
        (["-d", "-t", "busybox", "true"], 125),
    ]

    @Test(arguments: failures)
    func runFailuresUseDockersExitCodes(arguments: [String], status: Int32) async throws {
        let result = try await berth(["run", "--rm"] + arguments)
        #expect(result.status == status)
        #expect(result.output.isEmpty)
        #expect(result.error.hasPrefix("berth: "), "\(result.error)")
    }

    @Test func runInARootfsDirectoryStillWorks() async throws {
        let result = try await berth(["run", "--rootfs", try TestRootfs.busybox(), "--", "/bin/echo", "direct"])
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output == "direct\n")
    }

    @Test func createPrintsTheNewContainersID() async throws {
        let created = try await berth(["create", "--name", "cli-created", "busybox", "echo", "from created"])
        #expect(created.status == 0, "\(created.error)")
        let id = created.output.trimmingCharacters(in: .newlines)
        #expect(id.count == 64 && id.allSatisfy(\.isHexDigit))

        // Docker's create → start -a → logs → rm chain across invocations: the next runtime
        // adopts a created container whose creator has exited.
        let started = try await berth(["start", "-a", "cli-created"])
        #expect(started.status == 0, "\(started.error)")
        #expect(started.output == "from created\n")
        let logs = try await berth(["logs", "cli-created"])
        #expect(logs.output == "from created\n")
        #expect(try await berth(["rm", "cli-created"]).status == 0)
    }

    /// `--blkio-weight` and the `--device-*` rates, by path or number and in Docker's units,
    /// become the container's limits; a disk that does not exist fails the run with Docker's
    /// exit code, naming it.
    @Test func blockIOOptionsBecomeLimitsAndAMissingDiskIsNamed() async throws {
        guard let disk = scratchDisk() else { return }
        let created = try await berth([
            "create", "--name", "cli-blkio", "--blkio-weight", "300", "--device-read-bps", "\(disk.path):1mb",
            "--device-write-bps", "\(disk.path):512k", "--device-read-iops", "\(disk.number):100",
            "--device-write-iops", "\(disk.path):50", "busybox", "true",
        ])
        #expect(created.status == 0, "\(created.error)")
        let started = try await berth(["start", "-a", "cli-blkio"])
        #expect(started.status == 0, "\(started.error)")
        // Looking it up here adopts it (its creator has exited): this process removes it.
        let container = try await TestRuntime.shared().container("cli-blkio")
        #expect(container.configuration.resources.blockIOWeight == 300)
        #expect(container.configuration.resources.blockIOThrottles == [
            BlockIOThrottle(device: BlockDevice(path: disk.path), readBytesPerSecond: 1 << 20,
                            writeBytesPerSecond: 512 << 10, writeOperationsPerSecond: 50),
            BlockIOThrottle(device: try BlockDevice(parsing: disk.number), readOperationsPerSecond: 100),
        ])
        try await container.remove()

        let missing = try await berth(["run", "--rm", "--device-read-bps", "4095:4095:1mb", "busybox", "true"])
        #expect(missing.status == 125)
        #expect(missing.error.contains("4095:4095: no such disk"), "\(missing.error)")
    }

    @Test func aDetachedContainerIsControlledByLaterInvocations() async throws {
        let name = "cli-detached-\(getpid())"
        let started = try await berth(["run", "-d", "--name", name, "busybox", "sh", "-c", "echo up; exec sleep 60"])
        #expect(started.status == 0, "\(started.error)")
        #expect(started.output.count == 65, "\(started.output)")
        let short = String(started.output.prefix(12))
        #expect(try await berth(["ps", "-q"]).output.contains(short))
        var logs = try await berth(["logs", name])
        for _ in 0..<50 where logs.output.isEmpty {
            try await Task.sleep(for: .milliseconds(50))
            logs = try await berth(["logs", name])
        }
        #expect(logs.output == "up\n")
        let exec = try await berth(["exec", name, "hostname"])
        #expect(exec.status == 0, "\(exec.error)")
        #expect(exec.output == short + "\n")
        #expect(try await berth(["restart", "-t", "0", name]).status == 0)
        #expect(try await berth(["stop", "-t", "0", name]).output == name + "\n")
        #expect(try await berth(["ps", "-a", "--filter", "name=\(name)"]).output.contains("Exited (137)"))
        #expect(try await berth(["start", name]).output == name + "\n")
        #expect(try await berth(["rm", "-f", name]).status == 0)
        #expect(try await !berth(["ps", "-a", "-q"]).output.contains(short))
    }

    @Test func psListsTheContainersOfARunningOwner() async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.run(busybox(["sleep", "30"]) { $0.labels = ["suite": "cli"] })

        let all = try await berth(["ps", "-a", "-q"])
        #expect(all.status == 0, "\(all.error)")
        #expect(all.output.split(separator: "\n").allSatisfy { $0.count == 12 && $0.allSatisfy(\.isHexDigit) })
        let running = try await berth(["ps", "-q", "--filter", "label=suite=cli"])
        #expect(running.status == 0, "\(running.error)")

        // Docker's `ps` shows every container on the host: another process sees this
        // process's embedded container too.
        #expect(all.output.contains(String(container.id.prefix(12))))
        #expect(running.output == String(container.id.prefix(12)) + "\n")
        try await container.remove(force: true)
    }

    @Test func commandsOnAnUnknownContainerReportItAndExit125() async throws {
        for command in [["logs"], ["stop"], ["rm", "-f"], ["inspect"], ["exec"]] {
            let result = try await berth(command + ["no-such-container"] + (command == ["exec"] ? ["true"] : []))
            #expect(result.status == 125, "\(command)")
            #expect(result.error.hasPrefix("berth: "), "\(command): \(result.error)")
        }
    }
}

extension CLITests {
    @Test func networkCreateListAndRemove() async throws {
        let name = "cli-net-\(UInt32.random(in: 0...UInt32.max))"
        let created = try await berth(["network", "create", name])
        #expect(created.status == 0, "\(created.error)")
        #expect(created.output.count == 65, "\(created.output)")

        let listed = try await berth(["network", "ls"])
        #expect(listed.status == 0, "\(listed.error)")
        #expect(listed.output.contains(" \(name) "), "\(listed.output)")

        let removed = try await berth(["network", "rm", name])
        #expect(removed.status == 0, "\(removed.error)")
        #expect(removed.output == name + "\n")
        #expect(try await !berth(["network", "ls"]).output.contains(" \(name) "))

        let unknown = try await berth(["network", "rm", name])
        #expect(unknown.status == 125)
        #expect(unknown.error.hasPrefix("berth: "), "\(unknown.error)")
    }
}

extension CLITests {
    @Test func diffCommitAndExportAcrossInvocations() async throws {
        let name = "cli-fs-\(getpid())"
        let ran = try await berth(["run", "--name", name, "busybox", "sh", "-c", "echo hi > /etc/new; rm /etc/passwd"])
        #expect(ran.status == 0, "\(ran.error)")
        let diff = try await berth(["diff", name])
        #expect(diff.output.contains("A /etc/new\n") && diff.output.contains("D /etc/passwd\n"), "\(diff.output)")
        let committed = try await berth(["commit", "-m", "cli", name, "cli-committed:\(getpid())"])
        #expect(committed.status == 0, "\(committed.error)")
        let check = try await berth(["run", "--rm", "cli-committed:\(getpid())", "cat", "/etc/new"])
        #expect(check.output == "hi\n")
        #expect(try await berth(["rm", name]).status == 0)
        #expect(try await berth(["rmi", "cli-committed:\(getpid())"]).status == 0)
    }
}

extension CLITests {
    @Test func copyInFromAHostDirectoryAndOutAsATarStreamAcrossInvocations() async throws {
        let name = "cli-cp-\(getpid())"
        let host = try TemporaryDirectory(prefix: "cli-cp")
        defer { try? host.remove() }
        try FileManager.default.createDirectory(atPath: host.path + "/payload/sub", withIntermediateDirectories: true)
        try writeBytes(Array("from the host\n".utf8), to: host.path + "/payload/sub/note.txt")

        let created = try await berth(["create", "--name", name, "busybox", "cat", "/tmp/payload/sub/note.txt"])
        #expect(created.status == 0, "\(created.error)")
        let copiedIn = try await berth(["cp", host.path + "/payload", name + ":/tmp"])
        #expect(copiedIn.status == 0, "\(copiedIn.error)")
        #expect(copiedIn.output.isEmpty)

        // The tar on stdout holds the tree under its own name, with the file's bytes.
        let copiedOut = try await berth(["cp", name + ":/tmp/payload", "-"])
        #expect(copiedOut.status == 0, "\(copiedOut.error)")
        #expect(copiedOut.output.contains("payload/sub/note.txt"))
        #expect(copiedOut.output.contains("from the host\n"))
        let started = try await berth(["start", "-a", name])
        #expect(started.output == "from the host\n")

        // Out to a new host name, then a missing path: Docker's message and exit code.
        let toHost = try await berth(["cp", name + ":/tmp/payload/sub/note.txt", host.path + "/back.txt"])
        #expect(toHost.status == 0, "\(toHost.error)")
        #expect(FileManager.default.contents(atPath: host.path + "/back.txt") == Data("from the host\n".utf8))
        let missing = try await berth(["cp", name + ":/nope", "-"])
        #expect(missing.status == 125)
        #expect(missing.error == "berth: could not find the file /nope in container \(name)\n")
        // A tar on stdin into a directory; its hostile entry is refused after the good one.
        // The fixture writer's archives are ASCII (octal headers, text content, NUL padding),
        // so the text is the archive byte for byte.
        let archive = String(decoding: TarFixture.archive([.file("good", "kept\n"), .file("../escape", "x")]), as: UTF8.self)
        let fromStdin = try await berth(["cp", "-", name + ":/tmp"], input: archive)
        #expect(fromStdin.status == 125)
        #expect(fromStdin.error.contains("escapes the root"), "\(fromStdin.error)")
        let good = try await berth(["cp", name + ":/tmp/good", host.path + "/good"])
        #expect(good.status == 0, "\(good.error)")
        #expect(FileManager.default.contents(atPath: host.path + "/good") == Data("kept\n".utf8))
        #expect(try await berth(["cp", name + ":/escape", "-"]).status == 125)

        let neither = try await berth(["cp", host.path, host.path + "/again"])
        #expect(neither.status == 125)
        #expect(try await berth(["rm", name]).status == 0)
    }
}

extension CLITests {
    @Test func volumeCreateListRunAndRemove() async throws {
        let name = "cli-vol-\(UInt32.random(in: 0...UInt32.max))"
        let created = try await berth(["volume", "create", "--label", "suite=cli", name])
        #expect(created.status == 0, "\(created.error)")
        #expect(created.output == name + "\n")
        #expect(try await berth(["volume", "ls", "-q"]).output.split(separator: "\n").contains(Substring(name)))
        let inspected = try await berth(["volume", "inspect", name])
        #expect(inspected.status == 0, "\(inspected.error)")
        #expect(inspected.output.contains("\"suite\"") && inspected.output.contains("\"mountpoint\""), "\(inspected.output)")

        let wrote = try await berth(["run", "--rm", "-v", "\(name):/data", "busybox", "sh", "-c", "echo kept > /data/file"])
        #expect(wrote.status == 0, "\(wrote.error)")
        let read = try await berth(["run", "--rm", "-v", "\(name):/data:ro", "busybox", "cat", "/data/file"])
        #expect(read.output == "kept\n", "\(read.error)")
        let refused = try await berth(["run", "--rm", "-v", "\(name):/data:ro", "busybox", "sh", "-c", "echo x > /data/file"])
        #expect(refused.status != 0)

        // A volume in use by a container (here a created one) is kept, even with -f.
        let user = try await berth(["create", "-v", "\(name):/data", "busybox", "true"])
        #expect(user.status == 0, "\(user.error)")
        let inUse = try await berth(["volume", "rm", "-f", name])
        #expect(inUse.status == 125)
        #expect(inUse.error.hasPrefix("berth: ") && inUse.error.contains(name), "\(inUse.error)")
        #expect(try await berth(["rm", user.output.trimmingCharacters(in: .newlines)]).status == 0)

        let removed = try await berth(["volume", "rm", name])
        #expect(removed.status == 0, "\(removed.error)")
        #expect(removed.output == name + "\n")
        #expect(try await !berth(["volume", "ls", "-q"]).output.contains(name))
        let unknown = try await berth(["volume", "rm", name])
        #expect(unknown.status == 125)
        #expect(unknown.error.hasPrefix("berth: "), "\(unknown.error)")
        #expect(try await berth(["volume", "rm", "-f", name]).status == 0)
        let invalid = try await berth(["volume", "create", "bad/name"])
        #expect(invalid.status == 125)
        #expect(invalid.error.hasPrefix("berth: "), "\(invalid.error)")
    }

    @Test func volumePruneRemovesUnusedVolumes() async throws {
        let name = "cli-prune-\(UInt32.random(in: 0...UInt32.max))"
        #expect(try await berth(["volume", "create", name]).status == 0)
        let pruned = try await berth(["volume", "prune", "-f"])
        #expect(pruned.status == 0, "\(pruned.error)")
        #expect(pruned.output.contains(name + "\n"), "\(pruned.output)")
        #expect(try await !berth(["volume", "ls", "-q"]).output.contains(name))
    }
}

extension CLITests {
    /// A process that berth starts tries to reach berth's own stdio through `/proc/<pid>/fd`,
    /// as a shell user's `berth … < in >> out 2>> err` gives it: read the host files, write to
    /// them, and write again from the background after berth returned. With -i it first reads
    /// its line of input. (It reads before it writes anything: with pipes, a reader of its own
    /// stdout takes its own output, which is no leak.)
    static func hostile(interactive: Bool) -> String {
        (interactive ? "read -r line\n" : "") + """
        exec 3<&0
        for n in 0 1 2; do timeout 1 cat /proc/$$/fd/$n | tr a-z A-Z >&2 & done; wait
        echo tamper >> /proc/$$/fd/0

        """ + (interactive ? "echo \"got:$line\"\n" : "") + """
        echo first
        echo warn >&2
        (sleep 1; echo late >> /proc/self/fd/1; echo late >> /proc/self/fd/2; echo late >> /proc/self/fd/3) &
        echo second
        exit 3
        """
    }

    /// (command, -i): `exec` into a detached container, or `run --rootfs`.
    static let stdioRows: [(String, Bool)] = [("exec", false), ("exec", true), ("rootfs", false), ("rootfs", true)]

    @Test(arguments: stdioRows)
    func theCLINeverHandsItsOwnStdioToTheContainer(command: String, interactive: Bool) async throws {
        let runtime = try await TestRuntime.shared()
        let executable = try #require(Self.executable, "build berth first: swift build --build-tests")
        let files = try TemporaryDirectory(prefix: "cli-stdio")
        defer { try? files.remove() }
        let (input, output, error) = (files.path + "/in", files.path + "/out", files.path + "/err")
        // With -i the stdin file is meant for the container; without, it is the host's secret.
        let inputText = interactive ? "hello\n" : "secret-stdin\n"
        try writeBytes(Array(inputText.utf8), to: input)
        try writeBytes(Array("secret-stdout\n".utf8), to: output)
        try writeBytes(Array("secret-stderr\n".utf8), to: error)
        let script = Self.hostile(interactive: interactive)

        let name = "cli-stdio-\(getpid())"
        var words: [String]
        if command == "exec" {
            let started = try await berth(["run", "-d", "--name", name, "busybox", "sleep", "60"])
            #expect(started.status == 0, "\(started.error)")
            words = ["exec", "--root", runtime.root] + (interactive ? ["-i"] : []) + [name, "sh", "-c", script]
        } else {
            words = ["run", "--root", runtime.root, "--rootfs", try TestRootfs.busybox()] + (interactive ? ["-i"] : [])
                + ["--", "/bin/sh", "-c", script]
        }
        let quoted = ([executable] + words).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        let shell = "\(quoted.joined(separator: " ")) < '\(input)' >> '\(output)' 2>> '\(error)'; echo $?"
        let (_, status) = try runProgram(["/bin/sh", "-c", shell])
        let returned = [input, output, error].map { String(decoding: FileManager.default.contents(atPath: $0) ?? Data(), as: UTF8.self) }

        #expect(status == "3\n")
        // Nothing of the host files was read (it would come back upper-cased on stderr), the
        // stdin file was not written, and the output arrived in order on its own stream.
        #expect(returned[0] == inputText)
        #expect(returned[1] == "secret-stdout\n" + (interactive ? "got:hello\n" : "") + "first\nsecond\n")
        #expect(returned[2] == "secret-stderr\nwarn\n")
        // The background writer is 1 s in: nothing reaches the files after berth returned.
        try await Task.sleep(for: .seconds(2))
        let later = [input, output, error].map { String(decoding: FileManager.default.contents(atPath: $0) ?? Data(), as: UTF8.self) }
        #expect(later == returned)
        if command == "exec" { #expect(try await berth(["rm", "-f", name]).status == 0) }
    }

    /// `exec` and `run --rootfs` keep Docker's exit codes for a command that cannot start.
    static let startFailures: [([String], Int32)] = [
        (["exec", "CONTAINER", "/bin/nope"], 127), (["exec", "CONTAINER", "/etc/passwd"], 126),
        (["run", "--rootfs", "ROOTFS", "--", "/bin/nope"], 127), (["run", "--rootfs", "ROOTFS", "--", "/etc/passwd"], 126),
        (["exec", "CONTAINER"], 125),
    ]

    @Test func execAndRootfsRunsKeepDockersExitCodes() async throws {
        let name = "cli-codes-\(getpid())"
        let started = try await berth(["run", "-d", "--name", name, "busybox", "sleep", "60"])
        #expect(started.status == 0, "\(started.error)")
        let rootfs = try TestRootfs.busybox()
        for (words, status) in Self.startFailures {
            let result = try await berth(words.map { $0 == "CONTAINER" ? name : $0 == "ROOTFS" ? rootfs : $0 })
            #expect(result.status == status, "\(words): \(result.error)")
            #expect(result.output.isEmpty, "\(words)")
            #expect(result.error.hasPrefix("berth: "), "\(words): \(result.error)")
        }
        let piped = try await berth(["exec", "-i", name, "sh", "-c", "tr a-z A-Z; echo err >&2; exit 4"], input: "hi\n")
        #expect(piped.status == 4)
        #expect(piped.output == "HI\n")
        #expect(piped.error == "err\n")
        #expect(try await berth(["rm", "-f", name]).status == 0)
    }
}
