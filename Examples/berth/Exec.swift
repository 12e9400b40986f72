import ArgumentParser
import ContainerKernel
import Containers

/// `berth exec`.
struct Exec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command in a running container.",
        discussion: """
            The command joins the container's namespaces and cgroup. Exit status: the command's, \
            or 125 when berth itself fails, 126 when the command cannot be executed, 127 when it \
            is not found. Containers are embedded in the berth process that runs them: another \
            berth invocation sees them on the same --root only while that process runs.

            Without -t the command's stdout and stderr are pipes that berth copies to its own \
            (and its stdin one with -i): the command never holds berth's descriptors. berth \
            returns when the command exits (not when every background process it left has \
            closed them, as docker exec does): their later output is not shown.
            """)

    @OptionGroup var store: StoreOptions

    @Flag(name: [.customShort("i"), .customLong("interactive")], help: "Copy berth's stdin to the command.")
    var interactive = false

    @Flag(name: [.customShort("t"), .customLong("tty")], help: "Allocate a pseudo-terminal.")
    var tty = false

    @Option(name: [.customShort("e"), .customLong("env")], help: "Set an environment variable (KEY=value).")
    var environment: [String] = []

    @Option(name: [.customShort("w"), .customLong("workdir")], help: "Working directory (default: the container's).")
    var workingDirectory: String?

    @Option(name: [.customShort("u"), .customLong("user")], help: "User: UID[:GID] or NAME[:GROUP] (default: the container's).")
    var user: String?

    @Argument(parsing: .captureForPassthrough, help: "The container, then the command and its arguments.")
    var arguments: [String] = []

    func validate() throws { try checkHelpRequest(arguments, of: self) }

    func run() async throws {
        try await reportingContainerErrors {
            guard let name = arguments.first else { throw ValidationError("no container given") }
            let command = droppingTerminator(Array(arguments.dropFirst()))
            guard !command.isEmpty else { throw ValidationError("no command given") }
            let container = try store.openRuntime().container(name)
            if tty {
                let process = try await container.startExec(
                    command, environment: environment, workingDirectory: workingDirectory, user: user,
                    io: ProcessIO(terminal: currentTerminalSize()))
                if let terminal = process.terminal { await relay(terminal, forwardingInput: interactive) }
                throw ExitCode(try await process.wait().code)
            }
            // Never berth's own stdio: the command gets pipes that berth relays.
            let status = try await StdioRelay.run(interactive: interactive) { io in
                try await container.startExec(
                    command, environment: environment, workingDirectory: workingDirectory, user: user, io: io)
            }
            throw ExitCode(status.code)
        }
    }
}
