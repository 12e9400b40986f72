import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore

/// `code-runner-load`: a bounded load client. Sends `--requests` runs of `--command` with
/// `--concurrency` clients at once, each waiting for its answer before sending the next, and
/// prints one line: the counts by outcome, runs per second and the latency percentiles.
///
/// With `--shell`, each "run" is that shell command instead (`podman run --rm …`), timed the
/// same way, so a server and a command-line engine are measured alike.
@main
struct LoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "code-runner-load", abstract: "Sends a bounded load of runs to a code-runner server.")

    @Option(help: "The server's base URL.")
    var url = "http://127.0.0.1:8080"
    @Option(help: "The API key.")
    var key: String?
    @Option(help: "Runs in all.")
    var requests = 2000
    @Option(help: "Clients at once.")
    var concurrency = 8
    @Option(help: "The image.")
    var image = "busybox"
    @Option(parsing: .upToNextOption, help: "The command of each run.")
    var command = ["echo", "hi"]
    @Option(help: "Instead of the server, run this shell command each time (timed the same way).")
    var shell: String?
    @Option(help: "Runs first, not counted.")
    var warmup = 8

    func run() async throws {
        let body = try JSONSerialization.data(withJSONObject: ["image": image, "command": command])
        let one: @Sendable () async -> Outcome = { [url, key, shell] in
            if let shell { return await Self.runShell(shell) }
            return await Self.post(url + "/v1/runs", key: key, body: Array(body))
        }
        _ = await Self.load(requests: warmup, concurrency: concurrency, one)
        let started = ContinuousClock.now
        let outcomes = await Self.load(requests: requests, concurrency: concurrency, one)
        let elapsed = ContinuousClock.now - started
        let latencies = outcomes.compactMap { $0.status == 200 ? $0.latency : nil }.sorted()
        func percentile(_ p: Double) -> Double {
            guard !latencies.isEmpty else { return .nan }
            return Self.milliseconds(latencies[min(latencies.count - 1, Int((Double(latencies.count) * p).rounded(.up)) - 1)])
        }
        var counts: [Int: Int] = [:]
        for outcome in outcomes { counts[outcome.status, default: 0] += 1 }
        let seconds = Self.milliseconds(elapsed) / 1000
        let summary = counts.keys.sorted().map { "status_\($0)=\(counts[$0]!)" }.joined(separator: " ")
        print(String(format: "load requests=%d concurrency=%d %@ runs_per_second=%.1f p50_ms=%.1f p99_ms=%.1f",
                     requests, concurrency, summary, Double(latencies.count) / seconds, percentile(0.5), percentile(0.99)))
        if counts.keys.contains(where: { $0 != 200 && $0 != 429 }) { throw ExitCode.failure }
    }

    struct Outcome: Sendable {
        /// The HTTP status; 0 for a request that got no answer, 200 for a shell command that exited 0, 500 otherwise.
        var status: Int
        var latency: Duration
    }

    static func load(requests: Int, concurrency: Int, _ one: @escaping @Sendable () async -> Outcome) async -> [Outcome] {
        await withTaskGroup(of: [Outcome].self) { group in
            for client in 0..<concurrency {
                let share = requests / concurrency + (client < requests % concurrency ? 1 : 0)
                group.addTask {
                    var outcomes: [Outcome] = []
                    for _ in 0..<share { outcomes.append(await one()) }
                    return outcomes
                }
            }
            return await group.reduce(into: []) { $0 += $1 }
        }
    }

    static func post(_ url: String, key: String?, body: [UInt8]) async -> Outcome {
        let started = ContinuousClock.now
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let key { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        request.body = .bytes(ByteBuffer(bytes: body))
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            _ = try await response.body.collect(upTo: 16 << 20)
            return Outcome(status: Int(response.status.code), latency: ContinuousClock.now - started)
        } catch {
            return Outcome(status: 0, latency: ContinuousClock.now - started)
        }
    }

    static func runShell(_ command: String) async -> Outcome {
        let started = ContinuousClock.now
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        let status: Int32 = await withCheckedContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { continuation.resume(returning: -1) }
        }
        return Outcome(status: status == 0 ? 200 : 500, latency: ContinuousClock.now - started)
    }

    static func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }
}
