import ArgumentParser
import Containers
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `berth diff`, `export`, `commit` and `cp`: a container's filesystem.
let filesystemCommands: [any ParsableCommand.Type] = [Diff.self, Export.self, Commit.self, Copy.self]

/// `berth diff`.
struct Diff: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "List the changes of a container's filesystem (A added, C changed, D deleted).",
        discussion: embeddedNote)

    @OptionGroup var store: StoreOptions
    @Argument(help: "The container (name or id).")
    var container: String

    func run() async throws {
        try await reportingContainerErrors {
            for change in try store.openRuntime().container(container).changes() { print(change) }
        }
    }
}

/// `berth export`.
struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a container's whole filesystem as a tar archive.", discussion: embeddedNote)

    @OptionGroup var store: StoreOptions
    @Option(name: .shortAndLong, help: "The tar file to write (default: standard output, if it is not a terminal).")
    var output: String?
    @Argument(help: "The container (name or id).")
    var container: String

    func run() async throws {
        try await reportingContainerErrors {
            let target = try store.openRuntime().container(container)
            guard let output else {
                try refuseTarToTerminal(instead: "use -o FILE")
                try await target.export(to: .standardOutput)
                return
            }
            let file = try FileDescriptor.open(output, .writeOnly, options: [.create, .truncate], permissions: [.ownerReadWrite, .groupRead, .otherRead])
            defer { try? file.close() }
            try await target.export(to: file)
        }
    }
}

/// `berth commit`.
struct Commit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commit",
        abstract: "Make a new image from a container's changes.", discussion: embeddedNote)

    @OptionGroup var store: StoreOptions
    @Option(name: .shortAndLong, help: "The history comment of the new layer.")
    var message: String?
    @Flag(name: .shortAndLong, inversion: .prefixedNo,
          help: "Pause a running container while its changes are read, as docker commit does.")
    var pause = true
    @Argument(help: "The container (name or id).")
    var container: String
    @Argument(help: "The new image's name (REPOSITORY[:TAG]); without one the image stays unnamed.")
    var reference: String?

    func run() async throws {
        try await reportingContainerErrors {
            let target = try store.openRuntime().container(container)
            let image = try await target.commit(as: reference, comment: message, pause: pause)
            print(image.id)
        }
    }
}

/// Throws unless standard output is something other than a terminal, which a tar archive
/// would only garble.
///
/// - Parameter advice: What to do instead, for the message.
func refuseTarToTerminal(instead advice: String) throws {
    guard isatty(1) == 0 else { throw ValidationError("refusing to write a tar archive to a terminal: \(advice)") }
}

/// `berth cp`.
struct Copy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cp",
        abstract: "Copy files between a container and the host, or to and from a tar stream.",
        usage: """
            berth cp [--archive] [--follow-link] CONTAINER:SRC_PATH DEST_PATH|-
            berth cp [--archive] [--follow-link] SRC_PATH|- CONTAINER:DEST_PATH
            """,
        discussion: """
            With - as DEST_PATH the copy is written to standard output as a tar archive; with - \
            as SRC_PATH a tar archive read from standard input is extracted into the directory \
            DEST_PATH. Otherwise cp's rules apply, as with docker cp: an existing directory \
            DEST_PATH receives SRC_PATH under its own name (its contents, for a SRC_PATH ending \
            in /.); else the copy is written as DEST_PATH. Paths in the container resolve inside \
            its root filesystem; mounts of the running container are not seen. \(embeddedNote)
            """)

    /// One side of the copy, parsed as Docker parses it: `NAME:PATH` is in a container unless
    /// the text starts with `/` or `.`; `-` is a tar stream.
    enum Endpoint {
        case container(String, path: String)
        case host(String)
        case stream

        init(_ text: String) {
            if text == "-" {
                self = .stream
            } else if !text.hasPrefix("/"), !text.hasPrefix("."), let colon = text.firstIndex(of: ":") {
                self = .container(String(text[..<colon]), path: String(text[text.index(after: colon)...]))
            } else {
                self = .host(text)
            }
        }
    }

    @OptionGroup var store: StoreOptions
    @Flag(name: .shortAndLong, help: "Keep the owners (uid and gid) of what is copied into the container.")
    var archive = false
    @Flag(name: [.customShort("L"), .long], help: "Copy what a symlink SRC_PATH points to, not the symlink.")
    var followLink = false
    @Argument(help: "CONTAINER:SRC_PATH, a host path, or - for a tar archive on standard input.")
    var source: String
    @Argument(help: "CONTAINER:DEST_PATH, a host path, or - for a tar archive on standard output.")
    var destination: String

    func run() async throws {
        try await reportingContainerErrors {
            switch (Endpoint(source), Endpoint(destination)) {
            case (.container(let name, let path), .stream):
                try refuseTarToTerminal(instead: "redirect the output or give a host path")
                try store.openRuntime().container(name).copyOut(path, to: .standardOutput, followingLink: followLink)
            case (.container(let name, let path), .host(let hostPath)):
                try store.openRuntime().container(name).copyOut(path, toHostPath: hostPath, followingLink: followLink)
            case (.stream, .container(let name, let path)):
                try store.openRuntime().container(name).copyIn(from: .standardInput, to: path, preservingOwners: archive)
            case (.host(let hostPath), .container(let name, let path)):
                try store.openRuntime().container(name).copyIn(fromHostPath: hostPath, to: path, followingLink: followLink,
                                                               preservingOwners: archive)
            case (.container, .container):
                throw ValidationError("copying between containers is not supported")
            default:
                throw ValidationError("must specify at least one container source")
            }
        }
    }
}
