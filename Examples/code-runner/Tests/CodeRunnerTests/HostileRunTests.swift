import CodeRunner
import Foundation
import Testing

/// Runs that attack the host, each contained and reported as what it is, all at once, while
/// another client's short runs keep succeeding.
@Suite(.serialized)
struct HostileRunTests {
    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var script: String
        var limits = RequestedLimits()
        /// What the result must show.
        var check: @Sendable (RunResult) -> Bool
        var testDescription: String { name }
    }

    /// A file on the host that no run may read.
    static let secretPath = "/tmp/code-runner-secret-\(getpid())"
    static let secret = "host-secret-\(UUID().uuidString)"

    static let rows: [Row] = [
        Row(name: "fork bomb", script: "f() { f | f & }; f; sleep 5",
            limits: RequestedLimits(wallTimeMs: 3000, pids: 32)) { ($0.timedOut || $0.exitCode != 0) && $0.durationMs < 20_000 },
        Row(name: "memory hog", script: "x=aaaaaaaaaaaaaaaa; while true; do x=\"$x$x\"; done",
            limits: RequestedLimits(wallTimeMs: 30_000, memoryBytes: 32 << 20)) { $0.oomKilled && $0.exitCode == 137 && !$0.timedOut },
        Row(name: "infinite loop", script: "while :; do :; done",
            limits: RequestedLimits(wallTimeMs: 1000)) { $0.timedOut && $0.exitCode == 124 && $0.signal == "SIGKILL" },
        Row(name: "1 GB of output", script: "dd if=/dev/zero bs=1048576 count=1024 2>/dev/null; echo end >&2",
            limits: RequestedLimits(wallTimeMs: 60_000, outputBytes: 65536)) {
                $0.exitCode == 0 && $0.stdoutTruncated && $0.stdout.utf8.count == 65536 && $0.stderr == "end\n"
            },
        Row(name: "write to the read-only root", script: "echo x > /etc/owned") {
            $0.exitCode != 0 && $0.stderr.contains("Read-only file system")
        },
        Row(name: "reach the network", script: "wget -T 2 -q -O- http://1.1.1.1/ || echo refused; cat /proc/net/dev") {
            $0.stdout.hasPrefix("refused\n") && $0.stdout.contains("lo:") && $0.stdout.split(separator: "\n").count == 4
        },
        Row(name: "mount", script: "mount -t tmpfs none /mnt") { $0.exitCode != 0 },
        Row(name: "unmount /proc", script: "umount /proc") { $0.exitCode != 0 },
        Row(name: "a new user namespace", script: "unshare -U -r id") { $0.exitCode != 0 },
        Row(name: "reboot", script: "reboot -f") { $0.exitCode != 0 },
        Row(name: "the host's hostname", script: "echo owned > /proc/sys/kernel/hostname") { $0.exitCode != 0 },
        Row(name: "a block device", script: "mknod /tmp/sda b 8 0 && head -c 1 /tmp/sda") { $0.exitCode != 0 },
        Row(name: "host files through /proc", script: "cat /proc/*/root\(secretPath) /proc/1/root\(secretPath); head -c 64 /proc/kcore; ls /proc") {
            !$0.stdout.contains(secret) && !$0.stdout.contains("ELF")
        },
    ]

    @Test func eachIsContainedWhileAnotherClientIsServed() async throws {
        try Self.secret.write(toFile: Self.secretPath, atomically: true, encoding: .utf8)
        defer { unlink(Self.secretPath) }
        let hostname = ProcessInfo.processInfo.hostName
        try await withServer({ $0.maxConcurrentRuns = 4; $0.maxQueuedRuns = 64 }) { client, _ in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for row in Self.rows {
                    group.addTask {
                        let result = try await client.result(RunRequest(image: "busybox", command: ["sh", "-c", row.script], limits: row.limits))
                        #expect(row.check(result), "\(row.name): \(result)")
                    }
                }
                // The other client: short runs, one after another, all served meanwhile.
                group.addTask {
                    for index in 0..<10 {
                        let result = try await client.result(RunRequest(image: "busybox", command: ["echo", "\(index)"]))
                        #expect(result.stdout == "\(index)\n" && result.exitCode == 0)
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await client.get("/healthz").status == 200)
        }
        #expect(ProcessInfo.processInfo.hostName == hostname)
    }
}
