import CodeRunner
import Containers
import Foundation
import Testing

/// The server as it is deployed: the `code-runner` executable started as a process of its own,
/// stopped with SIGTERM while runs are in flight.
@Suite(.serialized)
struct ShutdownTests {
    /// A Berth root of this suite's own: the server removes every runner container of its root
    /// when it starts.
    static let root = "/var/tmp/code-runner-shutdown-tests"

    /// The `code-runner` executable beside the test bundle (the package's build puts its
    /// products in one directory).
    static func executable() throws -> String {
        let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
        let path = directory + "/code-runner"
        try #require(FileManager.default.isExecutableFile(atPath: path), "no code-runner at \(path): build the package first")
        return path
    }

    /// The ids of the containers of `root`.
    static func containerDirectories() -> Set<String> {
        Set((try? FileManager.default.contentsOfDirectory(atPath: root + "/containers")) ?? [])
    }

    /// Polls `condition` every 50 ms until it holds or `seconds` have passed.
    static func poll(_ seconds: Double, _ condition: () throws -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return try condition()
    }

    /// The directories below `root` named one of `names`, found by find(1).
    static func directories(named names: Set<String>, under root: String) throws -> [String] {
        let find = Process()
        find.executableURL = URL(fileURLWithPath: "/usr/bin/find")
        find.arguments = [root, "-type", "d", "("] + names.sorted().enumerated().flatMap { index, name in
            (index == 0 ? [] : ["-o"]) + ["-name", name]
        } + [")", "-print"]
        let output = Pipe()
        find.standardOutput = output
        find.standardError = FileHandle.nullDevice
        try find.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        find.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    @Test func sigtermDrainsTheRunsInFlightThenRemovesEveryContainer() async throws {
        let runtime = try ContainerRuntime(root: Self.root)
        if (try? runtime.images.image("busybox")) == nil { try await runtime.images.makeBusyboxImage() }
        let log = FileManager.default.temporaryDirectory.path + "/code-runner-shutdown-\(getpid()).log"
        FileManager.default.createFile(atPath: log, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: log) }
        let before = Self.containerDirectories()

        let server = Process()
        server.executableURL = URL(fileURLWithPath: try Self.executable())
        server.arguments = ["--port", "0", "--berth-root", Self.root, "--max-concurrent-runs", "4"]
        server.environment = ["CODE_RUNNER_API_KEYS": TestClient.key, "CODE_RUNNER_SCRATCH_DIRECTORY": "/tmp/code-runner-shutdown-\(getpid())",
                              "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        server.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        server.standardOutput = server.standardError
        try server.run()
        var port: Int?
        let listening = try await Self.poll(60) {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            guard let range = text.range(of: #"address=127\.0\.0\.1:[0-9]+"#, options: .regularExpression) else { return !server.isRunning }
            port = Int(text[range].split(separator: ":").last ?? "")
            return true
        }
        guard listening, let port, server.isRunning else {
            if server.isRunning { server.terminate() }
            Issue.record("the server did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            return
        }

        // Two runs in flight when SIGTERM comes: both must finish and be answered.
        let client = TestClient(port: port)
        let runs = (0..<2).map { _ in
            Task { try await client.result(RunRequest(image: "busybox", command: ["sh", "-c", "sleep 2; echo drained"])) }
        }
        #expect(try await Self.poll(60) { Self.containerDirectories().subtracting(before).count == 2 })
        let created = Self.containerDirectories().subtracting(before)
        kill(server.processIdentifier, SIGTERM)
        for run in runs {
            let result = try await run.value
            #expect(result.exitCode == 0 && result.stdout == "drained\n", "\(result)")
        }
        #expect(try await Self.poll(60) { !server.isRunning }, "the server did not exit after SIGTERM")
        guard !server.isRunning else {
            server.terminate()  // SIGTERM again, never SIGKILL: the server must clean up
            return
        }
        #expect(server.terminationReason == .exit && server.terminationStatus == 0,
                "\(server.terminationStatus): \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        // Nothing of its containers is left: no directory, no mount, no cgroup.
        #expect(Self.containerDirectories().intersection(created).isEmpty)
        let mounts = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        for id in created { #expect(!mounts.contains(id), "a mount of \(id) is left") }
        let cgroups = try Self.directories(named: created, under: "/sys/fs/cgroup")
        #expect(cgroups.isEmpty, "cgroups left: \(cgroups)")
        #expect(try runtime.list(all: true, labels: [Runner.label: nil]).isEmpty)
    }
}
