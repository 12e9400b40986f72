import Containers
import ContainerKernel
import Glibc
import Images
import Synchronization
import TestSupport

/// A runtime on a fresh root with the test busybox image (every applet and /bin/probe)
/// imported as `busybox:latest`; shared by the suite, since importing costs a layer unpack.
enum TestRuntime {
    private static let cached = Mutex<(ContainerRuntime, TemporaryDirectory)?>(nil)

    static func shared() async throws -> ContainerRuntime {
        if let (runtime, _) = cached.withLock({ $0 }) { return runtime }
        let root = try TemporaryDirectory(prefix: "runtime")
        let runtime = try ContainerRuntime(root: root.path)
        let layout = try TemporaryDirectory(prefix: "layout")
        defer { try? layout.remove() }
        let image = ImageFixtures.Image(layers: [ImageFixtures.Layer(try entries(of: TestRootfs.busybox()))],
                                        runtimeConfigJSON: #"{"Cmd":["/bin/sh"],"Env":["FROM_IMAGE=yes"]}"#)
        try ImageFixtures.writeLayout([image], at: layout.path, refName: "busybox:latest")
        _ = try await runtime.images.importLayout(at: layout.path, as: try ImageReference(parsing: "busybox:latest"))
        cached.withLock { $0 = (runtime, root) }
        return runtime
    }

    /// The tree under `root` as fixture entries, parents first.
    private static func entries(of root: String, prefix: String = "") throws -> [TarEntry] {
        guard let dir = opendir(root + "/" + prefix) else { throw TestSupportError("open \(root)/\(prefix)") }
        defer { closedir(dir) }
        var result: [TarEntry] = []
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        for name in names.sorted() {
            let relative = prefix.isEmpty ? name : prefix + "/" + name
            let full = root + "/" + relative
            var st = stat()
            guard lstat(full, &st) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                result.append(.directory(relative))
                result += try entries(of: root, prefix: relative)
            case S_IFLNK:
                guard let target = readLink(full) else { throw TestSupportError("readlink \(full)") }
                result.append(.symlink(relative, to: target))
            case S_IFREG:
                result.append(.file(relative, bytes: try readBytes(full), mode: UInt32(st.st_mode & 0o7777)))
            default: continue
            }
        }
        return result
    }
}

func busybox(_ command: [String], configure: (inout ContainerConfiguration) -> Void = { _ in }) -> ContainerConfiguration {
    var configuration = ContainerConfiguration(image: "busybox", command: command)
    configure(&configuration)
    return configuration
}
