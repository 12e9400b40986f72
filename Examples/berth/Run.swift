import ArgumentParser
import ContainerKernel
import Containers
import Dispatch

#if canImport(Glibc)
import Glibc
#endif

/// `berth run`: runs a command in a new container and exits with its exit code.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command in a new container.",
        discussion: """
            berth run [OPTIONS] IMAGE [COMMAND [ARG...]] creates a container from IMAGE, starts it, \
            prints its output and exits with its exit code; signals berth gets (such as Ctrl-C) are \
            passed on to the container. berth run --rootfs DIR [OPTIONS] [--] COMMAND [ARG...] runs \
            in a plain directory instead, without an image or any state on disk.

            Without -d the container is embedded: it lives as long as this berth process. With -d \
            berth prints the container's id and exits; the container is held by berth-supervisor, \
            and later berth invocations list it, read its logs, exec into it, stop and remove it. \
            Exit status: the command's, or 125 when berth itself fails, 126 when the command \
            cannot be executed, 127 when it is not found.

            With --rootfs and without -t, the process's stdout and stderr are pipes that berth \
            copies to its own, and its stdin is /dev/null unless -i copies berth's stdin to it: \
            the process never holds berth's descriptors.
            """
    )

    @OptionGroup var store: StoreOptions
    @OptionGroup var options: ContainerOptions

    @Flag(name: [.customShort("d"), .customLong("detach")], help: "Run in the background and print the container's id.")
    var detach = false

    @Option(help: "Run in this root filesystem directory instead of an image.")
    var rootfs: String?

    @Argument(parsing: .captureForPassthrough, help: "The image, then the command and its arguments (with --rootfs: only the command).")
    var arguments: [String] = []

    func validate() throws {
        try checkHelpRequest(arguments, of: self)
        if detach && rootfs != nil {
            throw ValidationError("-d needs an image: --rootfs runs a process, not a container with state")
        }
    }

    func run() async throws {
        let words = droppingTerminator(arguments)
        try await reportingContainerErrors {
            if let rootfs {
                try await runInDirectory(rootfs, command: words)
            } else {
                guard let image = words.first else { throw ValidationError("no image given") }
                try await runImage(image, command: Array(words.dropFirst()))
            }
        }
    }

    private func runImage(_ image: String, command: [String]) async throws {
        let runtime = try store.openRuntime()
        var configuration = try options.configuration(image: image, command: command)
        if detach {
            configuration.lifetime = .detached
            let container = try await runtime.run(configuration)
            print(container.id)
            return
        }
        // Attached, the output comes through pipes, not the log: berth ends as soon as the
        // container has closed them and exited. Berth removes the container itself.
        configuration.output = .stream
        configuration.autoRemove = false
        let container = try await runtime.create(configuration)
        do {
            try await container.start()
        } catch {
            if options.rm { try? await container.remove(force: true) }
            throw error
        }
        let input = options.interactive ? try container.attach().input : nil
        let pump = Task.detached { [tty = options.tty] in
            if let input { await pumpStandardInput(into: input, closingAtEnd: !tty) }
        }
        let output = try container.output()
        let status = try await forwardingSignals(to: container) { () async throws(ContainerError) -> ExitStatus in
            await printOutput(output)
            return try await container.wait()
        }
        pump.cancel()
        if options.rm { try await container.remove(force: true) }
        throw ExitCode(status.code)
    }

    /// The `--rootfs` mode: spawns the process directly with `ContainerKernel`.
    private func runInDirectory(_ rootfs: String, command: [String]) async throws {
        guard !command.isEmpty else { throw ValidationError("no command given") }
        let spec = try makeSpec(rootfs: rootfs, arguments: command)
        if options.tty {
            // The terminal is allocated in the container: berth relays keystrokes, as before.
            let process = try await ProcessHandle.spawn(spec)
            if let terminal = process.terminal { await relay(terminal, forwardingInput: true) }
            throw ExitCode(try await process.wait().code)
        }
        // Never berth's own stdio: the process gets pipes that berth relays.
        let status = try await StdioRelay.run(interactive: options.interactive) { io in
            var piped = spec
            piped.io = io
            return try await ProcessHandle.spawn(piped)
        }
        throw ExitCode(status.code)
    }

    private func makeSpec(rootfs: String, arguments: [String]) throws -> ProcessSpec {
        let imageOnly = [
            ("--name", options.name != nil), ("--entrypoint", options.entrypoint != nil), ("--restart", options.restart != nil),
            ("--health-cmd", options.healthCommand != nil), ("--label", !options.labels.isEmpty),
            ("--pull", options.pull != .missing), ("--stop-signal", options.stopSignal != nil),
            ("--stop-timeout", options.stopTimeout != nil), ("--init", options.`init`),
        ]
        if let (flag, _) = imageOnly.first(where: { $0.1 }) {
            throw ValidationError("\(flag) needs an image: --rootfs runs a process, not a container with state")
        }
        var spec = ProcessSpec(rootfs: rootfs, arguments: arguments)
        spec.hostname = options.hostname ?? "berth"
        spec.environment += options.environment
        spec.environment.append("HOSTNAME=\(spec.hostname ?? "")")
        spec.workingDirectory = options.workingDirectory ?? "/"
        if let user = options.user {
            let parts = user.split(separator: ":", maxSplits: 1).map { UInt32($0) }
            guard let uid = parts.first ?? nil, parts.count == 1 || parts[1] != nil else {
                throw ValidationError("with --rootfs, --user takes numeric UID[:GID], not \"\(user)\"")
            }
            spec.userID = uid
            spec.groupID = parts.count == 2 ? parts[1] ?? uid : uid
        }
        if try options.containerNetwork == .host { spec.namespaces.remove(.network) }
        if options.privileged {
            spec.capabilities = .all
            spec.seccomp = .unconfined
            spec.maskedPaths = []
            spec.readOnlyPaths = []
        }
        let added = try Capability.parsing(options.capAdd)
        spec.capabilities = spec.capabilities.adding(added, dropping: try Capability.parsing(options.capDrop).subtracting(added))
        let security = try options.security
        spec.noNewPrivileges = security.noNewPrivileges
        switch security.seccomp {
        case .dockerDefault: break
        case .unconfined: spec.seccomp = .unconfined
        case .profile(let json):
            spec.seccomp = .profile(try SeccompProfile(json: Array(json.utf8), capabilities: spec.capabilities.effective))
        }
        for mount in try options.mounts {
            switch mount {
            case .bind(let source, let target, let readOnly): spec.mounts.append(.bind(source, to: target, readOnly: readOnly))
            case .tmpfs(let target, let data): spec.mounts.append(.tmpfs(target, data: data))
            case .volume: throw ValidationError("with --rootfs, -v takes host paths: named volumes need an image")
            }
        }
        spec.readOnlyRootfs = options.readOnly
        spec.cgroup = CgroupPlacement(path: "berth/\(randomID())", resources: try options.resources)
        // Without a terminal, runInDirectory relays the process's stdio through pipes.
        if options.tty { spec.io = ProcessIO(terminal: currentTerminalSize()) }
        return spec
    }

    /// Twelve random hex digits from one 64-bit draw (one `getrandom`, not one per digit).
    private func randomID() -> String {
        let bits = UInt64.random(in: 0...UInt64.max) >> 16
        let hex = String(bits, radix: 16)
        return String(repeating: "0", count: 12 - hex.count) + hex
    }
}

/// Passes the signals a terminal or `kill` sends to berth on to the container while `body`
/// runs, as `docker run`'s sig-proxy does; berth itself then ends when the container does.
func forwardingSignals<T: Sendable>(to container: Container, _ body: () async throws(ContainerError) -> T) async throws(ContainerError) -> T {
    let forwarded = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2]
    let sources = forwarded.map { number in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number)
        source.setEventHandler { try? container.kill(Signal(rawValue: number)) }
        source.resume()
        return source
    }
    defer {
        for (source, number) in zip(sources, forwarded) {
            source.cancel()
            signal(number, SIG_DFL)
        }
    }
    return try await body()
}

/// Copies a container's output to berth's stdout and stderr until it ends.
func printOutput(_ output: ContainerOutput) async {
    for await chunk in output {
        _ = chunk.bytes.withUnsafeBytes { write(chunk.stream == .stdout ? 1 : 2, $0.baseAddress, $0.count) }
    }
}

/// Copies berth's stdin into `input` until end-of-file or cancellation. A pipe is closed at
/// the end, so the container sees end-of-file; a terminal stays open.
func pumpStandardInput(into input: ProcessInput, closingAtEnd: Bool) async {
    var buffer = [UInt8](repeating: 0, count: 4096)
    while !Task.isCancelled {
        let n = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
        guard n > 0, (try? await input.write(Array(buffer[0..<n]))) != nil else { break }
    }
    if closingAtEnd { await input.close() }
}

/// Copies the container's terminal to berth's stdout until the container closes it, and
/// berth's stdin (switched to raw mode) to the container's terminal when `forwardingInput`.
func relay(_ terminal: Terminal, forwardingInput: Bool) async {
    var saved = termios()
    let isTTY = forwardingInput && tcgetattr(0, &saved) == 0
    if isTTY {
        var raw = saved
        cfmakeraw(&raw)
        tcsetattr(0, TCSANOW, &raw)
    }
    defer { if isTTY { tcsetattr(0, TCSANOW, &saved) } }
    let pump = Task.detached { if forwardingInput { await pumpStandardInput(into: terminal.input, closingAtEnd: false) } }
    for await chunk in terminal.output {
        _ = chunk.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
    }
    pump.cancel()
}

/// The size of berth's own terminal, or 24×80 when stdout is not one.
func currentTerminalSize() -> TerminalSize {
    var size = winsize()
    guard ioctl(1, UInt(TIOCGWINSZ), &size) == 0, size.ws_row > 0 else { return TerminalSize(rows: 24, columns: 80) }
    return TerminalSize(rows: size.ws_row, columns: size.ws_col)
}
