import Containers
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Runs requests in throw-away containers: one hardened container per run, created, started,
/// read, waited for and removed.
///
/// It is also the service that cleans up: at start it removes what an earlier instance left
/// (after a crash), and at shutdown, after the HTTP server has drained, every container it made.
public final class Runner: Service, Sendable {
    /// The label on every container a runner makes; its value is the runner's instance id.
    public static let label = "code-runner.instance"

    let runtime: ContainerRuntime
    let configuration: ServerConfiguration
    let metrics: RunnerMetrics
    let queue: RunQueue
    /// This instance's label value.
    let instance = UUID().uuidString
    private let logger: Logger

    /// A runner on `runtime`.
    public init(runtime: ContainerRuntime, configuration: ServerConfiguration, metrics: RunnerMetrics, logger: Logger) {
        self.runtime = runtime
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
        queue = RunQueue(slots: configuration.maxConcurrentRuns, maximumWaiting: configuration.maxQueuedRuns) { depth in
            metrics.queueDepth.set(depth)
        }
    }

    /// Cleans up what a crashed instance left, waits for the shutdown, then removes every
    /// container this instance made.
    public func run() async throws {
        await removeContainers(labeled: nil)
        try? FileManager.default.removeItem(atPath: configuration.scratchDirectory)
        try? await gracefulShutdown()
        await removeContainers(labeled: instance)
        try? FileManager.default.removeItem(atPath: configuration.scratchDirectory)
    }

    /// Removes the runner's containers: this instance's (`instance`), or those of any instance
    /// that are not running (`nil`: an owner that died left them).
    private func removeContainers(labeled instance: String?) async {
        let containers = runtime.list(all: true, labels: [Self.label: instance])
        for container in containers where instance != nil || container.state.status != .running {
            logger.info("removing container left behind", metadata: ["container": "\(container.name)"])
            try? await container.remove(force: true)
        }
    }

    /// Runs `request` in a container of its own and returns how it went; `onOutput`, when
    /// given, gets the output as it comes.
    ///
    /// - Throws: ``APIError``: 400 for a request the container refuses, 500 when it cannot start.
    func execute(_ request: RunRequest, limits: RunLimits, logger: Logger,
                 onOutput: (@Sendable (OutputChunk) async -> Void)? = nil) async throws(APIError) -> RunResult {
        var config = ContainerConfiguration.untrusted(image: request.image, command: request.command)
        config.entrypoint = []
        config.environment = (request.env ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        config.labels = [Self.label: instance]
        config.pullPolicy = .never
        config.output = .stream
        config.interactive = request.stdin != nil
        config.timeout = .milliseconds(limits.wallTimeMs)
        config.resources.memoryLimit = limits.memoryBytes
        config.resources.memorySwapLimit = limits.memoryBytes
        config.resources.cpus = limits.cpus
        config.resources.pidsLimit = limits.pids
        let name = "run-" + UUID().uuidString.lowercased()
        config.name = name
        let files = try writeFiles(request.files, for: name)
        defer { if let files { try? FileManager.default.removeItem(atPath: files) } }
        if let files {
            config.mounts.append(.bind(source: files, target: "/work", readOnly: true))
            config.workingDirectory = "/work"
        }
        let logger = logger.with("run", name)
        let started = ContinuousClock.now
        let container: Container
        do {
            container = try await runtime.create(config)
        } catch {
            metrics.failed("start_error")
            logger.error("cannot create the container", metadata: ["error": "\(error)"])
            throw error.code == .invalidArgument
                ? APIError(.badRequest, "invalid_request", error.description)
                : APIError(.internalServerError, "start_failed", "the container could not be created: \(error)")
        }
        metrics.containersAlive.increment()
        defer { metrics.containersAlive.decrement() }
        do {
            let result = try await run(container, request, limits: limits, started: started, onOutput: onOutput)
            try? await container.remove(force: true)
            metrics.finished(result, duration: ContinuousClock.now - started)
            logger.info("run ended", metadata: ["exitCode": "\(result.exitCode)", "durationMs": "\(Int(result.durationMs))"])
            return result
        } catch {
            try? await container.remove(force: true)
            metrics.failed("start_error")
            logger.error("cannot run the container", metadata: ["error": "\(error)"])
            throw APIError(.internalServerError, "start_failed", "the container could not run: \(error)")
        }
    }

    private func run(_ container: Container, _ request: RunRequest, limits: RunLimits, started: ContinuousClock.Instant,
                     onOutput: (@Sendable (OutputChunk) async -> Void)?) async throws(ContainerError) -> RunResult {
        try await container.start()
        let output = try container.output()
        // The program's stdin is written beside reading its output, so that neither waits for
        // the other; a program that exits without reading it ends the write (EPIPE).
        let input = request.stdin.flatMap { _ in try? container.attach().input }
        async let written: Void = {
            guard let input, let stdin = request.stdin else { return }
            try? await input.write(Array(stdin.utf8))
            await input.close()
        }()
        var stdout = BoundedCapture(limit: limits.outputBytes)
        var stderr = BoundedCapture(limit: limits.outputBytes)
        for await chunk in output {
            switch chunk.stream {
            case .stdout: stdout.append(chunk.bytes)
            case .stderr: stderr.append(chunk.bytes)
            }
            await onOutput?(chunk)
        }
        await written
        let status = try await container.wait()
        let duration = ContinuousClock.now - started
        let signal: String? = switch status {
        case .signaled(let signal, _): "\(signal)"
        case .oomKilled, .timedOut: "SIGKILL"
        case .exited: nil
        }
        return RunResult(
            id: container.name, exitCode: status.code, signal: signal,
            stdout: String(decoding: stdout.bytes, as: UTF8.self), stderr: String(decoding: stderr.bytes, as: UTF8.self),
            stdoutTruncated: stdout.truncated, stderrTruncated: stderr.truncated,
            durationMs: Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15,
            oomKilled: status == .oomKilled || container.state.oomKilled, timedOut: status == .timedOut)
    }

    /// Writes a run's files into a directory of their own, readable by the container's
    /// unprivileged root; `nil` when there are none.
    private func writeFiles(_ files: [String: String]?, for name: String) throws(APIError) -> String? {
        guard let files, !files.isEmpty else { return nil }
        let directory = configuration.scratchDirectory + "/" + name
        let manager = FileManager.default
        do {
            let readable: [FileAttributeKey: Any] = [.posixPermissions: 0o755]
            try manager.createDirectory(atPath: configuration.scratchDirectory, withIntermediateDirectories: true, attributes: readable)
            try manager.createDirectory(atPath: directory, withIntermediateDirectories: false, attributes: readable)
            for (path, content) in files {
                let file = directory + "/" + path
                try manager.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true, attributes: readable)
                guard manager.createFile(atPath: file, contents: Data(content.utf8), attributes: [.posixPermissions: 0o644]) else {
                    throw CocoaError(.fileWriteUnknown)
                }
            }
        } catch {
            try? manager.removeItem(atPath: directory)
            throw APIError(.internalServerError, "files_failed", "cannot write the run's files: \(error)")
        }
        return directory
    }
}

/// The first `limit` bytes of a stream, and whether there were more.
struct BoundedCapture {
    let limit: Int
    private(set) var bytes: [UInt8] = []
    private(set) var truncated = false

    init(limit: Int) { self.limit = limit }

    mutating func append(_ chunk: [UInt8]) {
        let room = limit - bytes.count
        if chunk.count > room { truncated = true }
        bytes += chunk.prefix(max(0, room))
    }
}

extension Logger {
    /// This logger with one more metadata value.
    func with(_ key: String, _ value: String) -> Logger {
        var logger = self
        logger[metadataKey: key] = "\(value)"
        return logger
    }
}
