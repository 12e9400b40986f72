import ArgumentParser
import ContainerKernel
import Containers
import FoundationEssentials
import Images

#if canImport(Glibc)
import Glibc
#endif

/// The container commands, with Docker's names and flags, registered in ``Berth``.
let containerCommands: [any ParsableCommand.Type] = [
    Run.self, Create.self, Start.self, Stop.self, Kill.self, Restart.self, Remove.self, ListContainers.self,
    Logs.self, Exec.self, Wait.self, InspectContainer.self, Top.self, Stats.self, Pause.self, Unpause.self,
    Update.self, Rename.self, Events.self, SystemCommand.self,
]

/// Said in the help of every command that works on an existing container.
let embeddedNote = """
    Containers made with run -d or create are detached: berth-supervisor holds them, and every \
    berth invocation on the same --root controls them. A container of run without -d is \
    embedded in that berth process and ends with it; while it runs, other invocations see it, \
    exec into it and signal it (stop, kill), and its owner alone pauses, updates or removes it.
    """

extension StoreOptions {
    /// Opens the container runtime on the root, pulling with the credentials of Docker's config.json.
    func openRuntime() throws -> ContainerRuntime {
        var configuration = RegistryClient.Configuration()
        configuration.dockerConfig = try DockerConfig.standard()
        return try ContainerRuntime(root: resolvedRoot, registry: RegistryClient(configuration: configuration))
    }
}

/// Reports a feature berth does not have, with Docker's exit code for berth's own errors.
func unsupported(_ message: String) -> ExitCode {
    printError(message)
    return ExitCode(ExitCodes.berthError)
}

/// Runs a command body, turning Berth's errors into a `berth: …` message and Docker's exit
/// codes: 126 or 127 when a command cannot be executed or is not found, else 125 (which
/// Docker also uses for invalid arguments to a container).
func reportingContainerErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ValidationError {
        printError(error.message)
        throw ExitCode(ExitCodes.berthError)
    } catch let error as ContainerError {
        printError("\(error)")
        throw ExitCode(error.kernelError.map { dockerExitCode(for: $0) } ?? ExitCodes.berthError)
    } catch let error as ImageError {
        printError("\(error)")
        throw ExitCode(ExitCodes.berthError)
    } catch let error as KernelError {
        printError("\(error)")
        throw ExitCode(dockerExitCode(for: error))
    }
}

/// Docker's exit code for a process that did not start: 127 when the executable is missing,
/// 126 when it cannot be executed, 125 when something before `execve` failed.
func dockerExitCode(for error: KernelError) -> Int32 {
    guard error.stage == .exec else { return ExitCodes.berthError }
    return error.errno == .noSuchFileOrDirectory ? ExitCodes.notFound : ExitCodes.notExecutable
}

/// Shows the command's help for `--help` where `.captureForPassthrough` would take it as the
/// image or container: as the first word, before any positional argument.
func checkHelpRequest(_ words: [String], of command: any ParsableCommand) throws {
    if words.first == "--help" || words.first == "-h" { throw CleanExit.helpRequest(command) }
}

/// The words after a leading `--`, which `.captureForPassthrough` keeps.
func droppingTerminator(_ words: [String]) -> [String] {
    words.first == "--" ? Array(words.dropFirst()) : words
}

/// Writes each entry to berth's stdout or stderr, as the container wrote it.
func printLogs(_ entries: AsyncStream<LogEntry>, timestamps: Bool) async {
    let format = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    for await entry in entries {
        let text = timestamps ? entry.time.formatted(format) + " " + entry.log : entry.log
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { write(entry.stream == .stderr ? 2 : 1, $0.baseAddress, $0.count) }
    }
}

/// One or more containers named on the command line.
struct ContainerArguments: ParsableArguments {
    @Argument(help: "Container names, ids or unique id prefixes.")
    var containers: [String]
}

/// A command group (`network`, `volume`) that takes `--root` before its subcommand.
protocol CommandGroup {
    var store: StoreOptions { get }
}

/// A subcommand of a ``CommandGroup``, which takes `--root` before or after its name.
protocol GroupSubcommand {
    associatedtype Group: CommandGroup
    var parent: Group { get }
    var store: StoreOptions { get }
}

extension GroupSubcommand {
    /// Opens the runtime on the subcommand's `--root`, else the one given to the group.
    func openRuntime() throws -> ContainerRuntime {
        var options = store
        if options.root == nil { options.root = parent.store.root }
        return try options.openRuntime()
    }
}

/// Runs `body` for each name, as Docker's `rm` commands do: every one that can be is done, each
/// failure is reported, and the command fails at the end if any did.
func eachReportingFailures(_ names: [String], _ body: (String) throws -> Void) throws {
    var failed = false
    for name in names {
        do {
            try body(name)
        } catch {
            printError((error as? ValidationError)?.message ?? "\(error)")
            failed = true
        }
    }
    if failed { throw ExitCode(ExitCodes.berthError) }
}

/// Asks Docker's question before a prune, unless `force`.
///
/// - Returns: Whether to go on: `force`, or an answer starting with `y`.
func confirmed(_ warning: String, force: Bool) -> Bool {
    if force { return true }
    print("WARNING! \(warning)\nAre you sure you want to continue? [y/N] ", terminator: "")
    return readLine()?.lowercased().hasPrefix("y") ?? false
}

/// Runs `body` on each named container, as Docker does: every one is tried, each failure is
/// reported, and the command fails if any did.
func forEachContainer(
    _ store: StoreOptions, _ names: ContainerArguments, _ body: (Container) async throws -> Void
) async throws {
    try await reportingContainerErrors {
        let runtime = try store.openRuntime()
        var failed = false
        for name in names.containers {
            do {
                try await body(try runtime.container(name))
            } catch let error as ContainerError {
                printError("\(error)")
                failed = true
            }
        }
        if failed { throw ExitCode(ExitCodes.berthError) }
    }
}

// MARK: Lifecycle

/// `berth create`.
struct Create: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a new container without starting it, and print its id.",
        discussion: embeddedNote)

    @OptionGroup var store: StoreOptions
    @OptionGroup var options: ContainerOptions

    @Argument(parsing: .captureForPassthrough, help: "The image, then the command and its arguments.")
    var arguments: [String] = []

    func validate() throws { try checkHelpRequest(arguments, of: self) }

    func run() async throws {
        let words = droppingTerminator(arguments)
        try await reportingContainerErrors {
            guard let image = words.first else { throw ValidationError("no image given") }
            var configuration = try options.configuration(image: image, command: Array(words.dropFirst()))
            configuration.lifetime = .detached
            let container = try await store.openRuntime().create(configuration)
            print(container.id)
        }
    }
}

/// `berth start`.
struct Start: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Start a created or exited container.",
        discussion: """
            With -a, berth prints the container's output and exits with its exit code. Without \
            -a it starts the container in the background and prints its name. \(embeddedNote)
            """)

    @OptionGroup var store: StoreOptions

    @Flag(name: [.customShort("a"), .customLong("attach")], help: "Print the container's output and exit with its code.")
    var attach = false

    @Argument(help: "The container's name, id or unique id prefix.")
    var container: String

    func run() async throws {
        try await reportingContainerErrors {
            let container = try store.openRuntime().container(self.container)
            try requireDetached(container, unless: attach, for: "start without -a")
            try await container.start()
            guard attach else {
                print(container.name)
                return
            }
            let status = try await forwardingSignals(to: container) { () async throws(ContainerError) -> ExitStatus in
                await printLogs(container.logs(follow: true), timestamps: false)
                return try await container.wait()
            }
            throw ExitCode(status.code)
        }
    }
}

/// `berth stop`.
struct Stop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Stop running containers: the stop signal, then SIGKILL after a grace period.",
        discussion: embeddedNote)

    @OptionGroup var store: StoreOptions

    @Option(name: [.customShort("t"), .customLong("time")], help: "Seconds to wait before SIGKILL (default: the container's stop timeout).")
    var time: Int?

    @OptionGroup var names: ContainerArguments

    func run() async throws {
        try await forEachContainer(store, names) { container in
            try await container.stop(timeout: time.map { .seconds($0) })
            print(container.name)
        }
    }
}

/// `berth kill`.
struct Kill: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "kill", abstract: "Send a signal to running containers.", discussion: embeddedNote)

    @OptionGroup var store: StoreOptions

    @Option(name: [.customShort("s"), .customLong("signal")], help: "The signal: a name (KILL, SIGTERM) or number.")
    var signal = "KILL"

    @OptionGroup var names: ContainerArguments

    func run() async throws {
        let parsed: Signal
        do { parsed = try Signal(parsing: signal) } catch { throw ValidationError("\(error)") }
        try await forEachContainer(store, names) { container in
            try container.kill(parsed)
            print(container.name)
        }
    }
}

/// `berth restart`.
struct Restart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restart",
        abstract: "Stop and start detached containers again.", discussion: embeddedNote)

    @OptionGroup var store: StoreOptions

    @Option(name: [.customShort("t"), .customLong("time")], help: "Seconds to wait before SIGKILL (default: the container's stop timeout).")
    var time: Int?

    @OptionGroup var names: ContainerArguments

    func run() async throws {
        try await forEachContainer(store, names) { container in
            try requireDetached(container, for: "restart")
            try await container.restart(timeout: time.map { .seconds($0) })
            print(container.name)
        }
    }
}

/// Refuses to start an embedded container in the background: it would die with this berth
/// invocation as soon as the command returns.
func requireDetached(_ container: Container, unless attached: Bool = false, for what: String) throws {
    guard !attached, container.configuration.lifetime == .embedded else { return }
    throw unsupported("\(what): \(container.name) is embedded (made by run without -d) and would die with this berth command")
}

/// `berth rm`.
struct Remove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm", abstract: "Remove containers and everything they own.", discussion: embeddedNote)

    @OptionGroup var store: StoreOptions

    @Flag(name: [.customShort("f"), .customLong("force")], help: "Kill running containers first.")
    var force = false

    @OptionGroup var names: ContainerArguments

    func run() async throws {
        try await forEachContainer(store, names) { container in
            try await container.remove(force: force)
            print(container.name)
        }
    }
}

/// `berth wait`.
struct Wait: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait",
        abstract: "Wait for containers to stop, then print their exit codes.", discussion: embeddedNote)

    @OptionGroup var store: StoreOptions
    @OptionGroup var names: ContainerArguments

    func run() async throws {
        try await forEachContainer(store, names) { container in
            print(try await container.wait().code)
        }
    }
}

/// `berth pause`.
struct Pause: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Freeze every process of running containers.", discussion: embeddedNote)

    @OptionGroup var store: StoreOptions
    @OptionGroup var names: ContainerArguments

    func run() async throws {
        try await forEachContainer(store, names) { container in
            try await container.pause()
            print(container.name)
        }
    }
}

/// `berth unpause`.
struct Unpause: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unpause", abstract: "Thaw paused containers.", discussion: embeddedNote)

    @OptionGroup var store: StoreOptions
    @OptionGroup var names: ContainerArguments

    func run() async throws {
        try await forEachContainer(store, names) { container in
            try await container.resume()
            print(container.name)
        }
    }
}

/// `berth update`.
struct Update: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update",
        abstract: "Change the resource limits of running containers.", discussion: embeddedNote)

    @OptionGroup var store: StoreOptions

    @Option(name: [.customShort("m"), .customLong("memory")], help: "Memory limit (e.g. 32m, 1g).")
    var memory: String?

    @Option(help: "Number of CPUs (e.g. 0.5).")
    var cpus: Double?

    @Option(name: .customLong("pids-limit"), help: "Maximum number of processes (0 or less: unlimited).")
    var pidsLimit: Int64?

    @OptionGroup var names: ContainerArguments

    func validate() throws {
        if memory == nil && cpus == nil && pidsLimit == nil {
            throw ValidationError("give at least one of --memory, --cpus, --pids-limit")
        }
    }

    func run() async throws {
        var resources = CgroupResources()
        resources.memoryLimit = try memory.map(parseBytes)
        resources.cpus = cpus
        resources.pidsLimit = pidsLimit
        try await forEachContainer(store, names) { container in
            try container.update(resources: resources)
            print(container.name)
        }
    }
}

/// `berth rename`.
struct Rename: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rename", abstract: "Rename a container.", discussion: embeddedNote)

    @OptionGroup var store: StoreOptions

    @Argument(help: "The container's name, id or unique id prefix.")
    var container: String

    @Argument(help: "The new name.")
    var newName: String

    func run() async throws {
        try await reportingContainerErrors {
            try store.openRuntime().container(container).rename(to: newName)
        }
    }
}

/// `berth system …`.
struct SystemCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "system", abstract: "Manage Berth's root directory.", subcommands: [Prune.self])

    /// `berth system prune`.
    struct Prune: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "prune",
            abstract: "Remove stopped containers, and what berth processes that died left behind.",
            discussion: "Opening the root already removes the containers, mounts and cgroups of dead berth processes; this also removes created and exited containers. Images are pruned with `berth image prune`.")

        @OptionGroup var store: StoreOptions

        @Flag(name: [.customShort("f"), .customLong("force")], help: "Do not ask for confirmation.")
        var force = false

        @Flag(help: "Only sweep what ended processes (test sessions) left, and containers whose lease ended: their containers, mounts, cgroups, network sandboxes and session files; print each.")
        var sessions = false

        func run() async throws {
            if sessions {
                try await reportingContainerErrors {
                    let runtime = try store.openRuntime()
                    (runtime.removedAtOpen + (await runtime.pruneSessions())).forEach { print($0) }
                }
                return
            }
            guard confirmed("This will remove all stopped containers.", force: force) else { return }
            try await reportingContainerErrors {
                let removed = try await store.openRuntime().prune()
                print("Deleted Containers:")
                removed.forEach { print($0) }
            }
        }
    }
}
