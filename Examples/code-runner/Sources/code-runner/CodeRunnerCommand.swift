import ArgumentParser
import CodeRunner
import Containers
import Foundation
import Logging

/// `code-runner [--config FILE] [--host H] [--port P] …`: serves the API until SIGTERM.
@main
struct CodeRunnerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "code-runner",
        abstract: "Runs untrusted commands in throw-away Berth containers, over HTTP.",
        discussion: """
            Settings come from the defaults, then --config (JSON), then CODE_RUNNER_* variables, then these flags. \
            Runs need their image in Berth's store: `berth image busybox` makes busybox offline.
            """)

    @Option(help: "A JSON configuration file (the fields of ServerConfiguration).")
    var config: String?
    @Option(help: "The address to listen on.")
    var host: String?
    @Option(help: "The port; 0 picks a free one.")
    var port: Int?
    @Option(help: "A file of API keys, one a line.")
    var apiKeysFile: String?
    @Option(help: "Runs at once.")
    var maxConcurrentRuns: Int?
    @Option(help: "Runs that may wait for a slot before requests get 429.")
    var maxQueuedRuns: Int?
    @Option(help: "The registry (host[:port]) POST /v1/images/pull pulls from.")
    var registry: String?
    @Option(help: "Berth's root (images and containers).")
    var berthRoot: String?

    func run() async throws {
        let flags = ServerFlags(host: host, port: port, apiKeysFile: apiKeysFile, maxConcurrentRuns: maxConcurrentRuns,
                                maxQueuedRuns: maxQueuedRuns, registry: registry, berthRoot: berthRoot)
        let settings = try ServerConfiguration.resolve(file: config, environment: ProcessInfo.processInfo.environment, flags: flags)
        var logger = Logger(label: "code-runner")
        logger.logLevel = .info
        // The configured registry may be reached over plain HTTP (loopback ones always may).
        var registryConfiguration = RegistryClient.Configuration()
        registryConfiguration.insecureRegistries = Set(settings.registry.map { [$0] } ?? [])
        let runtime = try ContainerRuntime(root: settings.berthRoot ?? ContainerRuntime.defaultRoot,
                                           registry: RegistryClient(configuration: registryConfiguration, logger: logger), logger: logger)
        let server = try CodeRunnerServer(configuration: settings, runtime: runtime, logger: logger)
        try await server.run { [logger, host = settings.host] port in
            logger.info("listening", metadata: ["address": "\(host):\(port)"])
        }
    }
}
