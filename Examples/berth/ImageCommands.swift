import ArgumentParser
import Containers
import FoundationEssentials
import Images

#if canImport(Glibc)
import Glibc
#endif

/// The image commands, with Docker's names and flags, registered in ``Berth``.
let imageCommands: [any ParsableCommand.Type] = [
    Pull.self, Push.self, ListImages.self, ImageCommand.self, Tag.self, Rmi.self, Save.self, Load.self, Import.self,
    Login.self, Logout.self,
]

/// `--root`, shared by every command that opens the image store.
struct StoreOptions: ParsableArguments {
    @Option(help: "Berth's root directory (default: $BERTH_ROOT, else /var/lib/berth).")
    var root: String?

    /// The root in use: `--root`, else `BERTH_ROOT`, else `/var/lib/berth`.
    var resolvedRoot: String {
        root ?? ProcessInfo.processInfo.environment["BERTH_ROOT"] ?? "/var/lib/berth"
    }

    /// Opens the store, with credentials from Docker's config.json.
    func open() throws(ImageError) -> ImageStore {
        var configuration = RegistryClient.Configuration()
        configuration.dockerConfig = try DockerConfig.standard()
        return try ImageStore(root: resolvedRoot, registry: RegistryClient(configuration: configuration))
    }
}

/// Prints one line per blob state change, as `docker pull` does when not on a terminal.
///
/// - Parameters:
///   - events: The transfer's progress stream; read to its end.
///   - verb: `Downloading` or `Pushing`.
///   - quiet: Read the stream without printing.
/// - Returns: Whether any blob was transferred.
func printProgress(_ events: AsyncStream<TransferProgress>, verb: String, quiet: Bool) async -> Bool {
    var announced: Set<Digest> = []
    var transferred = false
    for await event in events {
        let id = String(event.digest.encoded.prefix(12))
        let line: String?
        switch event.event {
        case .skipped: line = "\(id): Already exists"
        case .transferring: line = announced.insert(event.digest).inserted ? "\(id): \(verb)" : nil
        case .done:
            transferred = true
            line = "\(id): \(verb == "Pushing" ? "Pushed" : "Pull complete")"
        }
        if let line, !quiet { print(line) }
    }
    return transferred
}

struct Pull: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pull", abstract: "Download an image from a registry.")

    @OptionGroup var store: StoreOptions
    @Option(help: "Platform to pull from a multi-platform image (os/arch[/variant]).")
    var platform: String?
    @Flag(name: .shortAndLong, help: "Print only the image reference.")
    var quiet = false
    @Argument(help: "The image, for example busybox or 127.0.0.1:5000/team/app:1.0.")
    var image: String

    func run() async throws {
        try await reportingContainerErrors {
            let images = try store.open()
            let reference = try ImageReference(parsing: image)
            let wanted = try platform.map { (text) throws(ImageError) in try Platform(parsing: text) } ?? .host
            let (events, sink) = AsyncStream.makeStream(of: TransferProgress.self)
            if !quiet { print("\(reference.tag ?? reference.digest?.description ?? "latest"): Pulling from \(reference.repository)") }
            async let downloaded = printProgress(events, verb: "Downloading", quiet: quiet)
            let pulled = try await images.pull(reference, platform: wanted, progress: sink)
            let status = await downloaded ? "Downloaded newer image for" : "Image is up to date for"
            if !quiet {
                print("Digest: \(pulled.digest)")
                print("Status: \(status) \(reference)")
            }
            print(reference)
        }
    }
}

struct Push: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "push", abstract: "Upload an image to a registry.")

    @OptionGroup var store: StoreOptions
    @Flag(name: .shortAndLong, help: "Print only the pushed digest.")
    var quiet = false
    @Argument(help: "The image's reference, which names the registry.")
    var image: String

    func run() async throws {
        try await reportingContainerErrors {
            let images = try store.open()
            let (events, sink) = AsyncStream.makeStream(of: TransferProgress.self)
            async let printed = printProgress(events, verb: "Pushing", quiet: quiet)
            let pushed = try await images.push(image, progress: sink)
            _ = await printed
            print(quiet ? "\(pushed.digest)" : "\(image): digest: \(pushed.digest) size: \(pushed.size)")
        }
    }
}

struct ListImages: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "images", abstract: "List images.")

    @OptionGroup var store: StoreOptions
    @Flag(name: .shortAndLong, help: "Print only image IDs.")
    var quiet = false

    func run() async throws {
        try await reportingContainerErrors {
            let images = try store.open().images()
            if quiet {
                for id in Set(images.map(\.id)).sorted() { print(id.encoded.prefix(12)) }
                return
            }
            let rows = images.map { image in
                [
                    image.reference?.familiarName ?? "<none>", image.reference?.tag ?? "<none>", String(image.id.encoded.prefix(12)),
                    image.config.created.flatMap(parseTimestamp).map(ago) ?? "", bytes(UInt64(max(image.size, 0))),
                ]
            }
            printTable(header: ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows: rows)
        }
    }
}

/// `berth image …`: the commands Docker keeps under `docker image`.
struct ImageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image", abstract: "Manage images.",
        subcommands: [Inspect.self, Prune.self, Busybox.self, Pull.self, Push.self, Tag.self, Rmi.self, Save.self, Load.self, Import.self])

    struct Inspect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "inspect", abstract: "Show images as JSON.")

        @OptionGroup var store: StoreOptions
        @Argument(help: "Images (reference, ID or digest).")
        var images: [String]

        /// The shape `docker image inspect` prints, for the fields Berth knows.
        struct Description: Encodable {
            var Id: String
            var RepoTags: [String]
            var RepoDigests: [String]
            var Created: String?
            var Architecture: String
            var Variant: String?
            var Os: String
            var Size: Int64
            var Config: RuntimeConfig?
            var RootFS: ImageConfig.RootFS
            var History: [ImageConfig.History]?
        }

        func run() async throws {
            try await reportingContainerErrors {
                let store = try store.open()
                var all: [Description] = []
                for name in images {
                    let image = try store.image(name)
                    let tags = try store.images().filter { $0.id == image.id }.compactMap(\.reference).filter { $0.tag != nil }
                    all.append(Description(
                        Id: image.id.description, RepoTags: tags.map(\.description),
                        RepoDigests: tags.map { "\($0.name)@\(image.digest)" }, Created: image.config.created,
                        Architecture: image.config.architecture, Variant: image.config.variant, Os: image.config.os,
                        Size: image.size, Config: image.config.config, RootFS: image.config.rootfs, History: image.config.history))
                }
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(all), as: UTF8.self))
            }
        }
    }

    struct Prune: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "prune", abstract: "Remove unnamed images and unreferenced blobs.")

        @OptionGroup var store: StoreOptions
        @Flag(name: .shortAndLong, help: "Remove every image, not only unnamed ones.")
        var all = false
        @Flag(name: .shortAndLong, help: "Do not ask for confirmation (accepted for Docker compatibility).")
        var force = false

        func run() async throws {
            try await reportingContainerErrors {
                let store = try store.open()
                for image in try store.images() where all || image.reference == nil {
                    let name = image.reference?.description ?? image.id.description
                    for removed in try store.remove(name) { print("Untagged: \(removed)") }
                    if image.reference == nil { print("Deleted: \(image.id)") }
                }
                let freed = try await store.collectGarbage()
                print("Deleted \(freed.count) blobs")
            }
        }
    }

    struct Busybox: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "busybox",
            abstract: "Build busybox:latest from this machine's static busybox, without a registry.")

        @OptionGroup var store: StoreOptions
        @Option(help: "A statically linked busybox binary.")
        var binary = "/bin/busybox"

        func run() async throws {
            try await reportingContainerErrors {
                let image = try await store.open().makeBusyboxImage(from: binary)
                print(image.reference?.description ?? image.id.description)
            }
        }
    }
}

struct Tag: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tag", abstract: "Give an image another name.")

    @OptionGroup var store: StoreOptions
    @Argument(help: "The existing image.")
    var source: String
    @Argument(help: "The new name.")
    var target: String

    func run() async throws {
        try await reportingContainerErrors {
            try store.open().tag(source, as: try ImageReference(parsing: target))
        }
    }
}

struct Rmi: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rmi", abstract: "Remove image names; unreferenced blobs go with the next prune.")

    @OptionGroup var store: StoreOptions
    @Flag(name: .shortAndLong, help: "Remove even if a container uses the image.")
    var force = false
    @Argument(help: "Images (reference, ID or digest).")
    var images: [String]

    func run() async throws {
        try await reportingContainerErrors {
            // Through the runtime, which knows which images its containers use.
            let runtime = try ContainerRuntime(root: store.resolvedRoot)
            for name in images {
                for removed in try runtime.removeImage(name, force: force) { print("Untagged: \(removed)") }
            }
        }
    }
}

struct Save: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "save", abstract: "Write images to a tar archive.")

    @OptionGroup var store: StoreOptions
    @Option(name: .shortAndLong, help: "The archive file (default: standard output, if it is not a terminal).")
    var output: String?
    @Option(help: "docker-archive or oci-archive.")
    var format: String = ArchiveFormat.dockerArchive.rawValue
    @Argument(help: "Images (reference, ID or digest).")
    var images: [String]

    func run() async throws {
        guard let archiveFormat = ArchiveFormat(rawValue: format) else {
            throw ValidationError("unknown format \"\(format)\": use docker-archive or oci-archive")
        }
        if output == nil && isatty(1) == 1 {
            throw ValidationError("refusing to write an archive to a terminal; use -o or redirect standard output")
        }
        try await reportingContainerErrors {
            try await store.open().save(images, to: output ?? "/dev/stdout", format: archiveFormat)
        }
    }
}

struct Load: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "load", abstract: "Add the images of a tar archive (docker-archive or oci-archive).")

    @OptionGroup var store: StoreOptions
    @Option(name: .shortAndLong, help: "The archive file (default: standard input).")
    var input: String?
    @Flag(name: .shortAndLong, help: "Print nothing.")
    var quiet = false

    func run() async throws {
        try await reportingContainerErrors {
            let loaded = try await store.open().load(from: input ?? "/dev/stdin")
            guard !quiet else { return }
            for image in loaded {
                print(image.reference.map { "Loaded image: \($0)" } ?? "Loaded image ID: \(image.id)")
            }
        }
    }
}

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "import", abstract: "Make a one-layer image from a directory or a plain tar file.")

    @OptionGroup var store: StoreOptions
    @Option(name: .shortAndLong, help: "A commit message for the image's history.")
    var message: String?
    @Argument(help: "A directory or an uncompressed tar file.")
    var source: String
    @Argument(help: "The image's name (REPOSITORY[:TAG]).")
    var reference: String?

    func run() async throws {
        try await reportingContainerErrors {
            let name = try reference.map { (text) throws(ImageError) in try ImageReference(parsing: text) }
            let image = try await store.open().importFilesystem(
                source, as: name, history: ImageConfig.History(comment: message ?? "imported from \(source)"))
            print(image.id)
        }
    }
}

struct Login: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "login", abstract: "Check credentials with a registry and store them in Docker's config.json.")

    @Option(name: .shortAndLong, help: "User name.")
    var username: String
    @Option(name: .shortAndLong, help: "Password (prefer --password-stdin).")
    var password: String?
    @Flag(name: .customLong("password-stdin"), help: "Read the password from standard input.")
    var passwordFromStandardInput = false
    @Argument(help: "The registry host (default: docker.io).")
    var server: String = ImageReference.dockerHub

    func run() async throws {
        let secret = passwordFromStandardInput ? readLine(strippingNewline: true) : password
        guard let secret, !secret.isEmpty else { throw ValidationError("a password is required: use -p or --password-stdin") }
        try await reportingContainerErrors {
            let credentials = RegistryCredentials(username: username, password: secret)
            var configuration = RegistryClient.Configuration()
            configuration.credentials = [server: credentials]
            try await RegistryClient(configuration: configuration).ping(server)
            try DockerConfig.storeCredentials(credentials, for: server, in: DockerConfig.standardPath())
            print("Login Succeeded")
        }
    }
}

struct Logout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logout", abstract: "Remove a registry's credentials from Docker's config.json.")

    @Argument(help: "The registry host (default: docker.io).")
    var server: String = ImageReference.dockerHub

    func run() async throws {
        try await reportingContainerErrors {
            let removed = try DockerConfig.removeCredentials(for: server, in: DockerConfig.standardPath())
            print(removed ? "Removing login credentials for \(server)" : "Not logged in to \(server)")
        }
    }
}

/// An RFC 3339 time from an image config, with or without fractional seconds.
func parseTimestamp(_ text: String) -> Date? {
    (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text))
        ?? (try? Date.ISO8601FormatStyle().parse(text))
}
