import Glibc
import SystemSupport

/// Finds the files a dynamically linked program loads, as the dynamic loader `ld.so` would on
/// this machine, by reading ELF headers: no `ldd`, nothing is run.
///
/// For each object it reads the interpreter (`PT_INTERP`) and the needed libraries
/// (`DT_NEEDED`), and looks each one up in the object's `DT_RPATH` (when it has no
/// `DT_RUNPATH`), its `DT_RUNPATH`, the directories `/etc/ld.so.conf` lists (with its
/// `include`s) and the default directories (`/lib/<multiarch>`, `/usr/lib/<multiarch>`,
/// `/lib64`, `/usr/lib64`, `/lib`, `/usr/lib`), taking the first file of the same ELF class and
/// machine; `$ORIGIN` is the directory of the object that names the path.
///
/// ```swift
/// let files = try SharedLibraryResolver().closure(of: ["/usr/bin/redis-server"])
/// // ["/usr/bin/redis-server", "/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6", …]
/// ```
public struct SharedLibraryResolver: Sendable, Hashable {
    /// The directories `ld.so.conf` names, in order, before the default ones.
    public var configuredDirectories: [String]

    /// Reads the loader's configuration.
    ///
    /// - Parameter configuration: The `ld.so.conf` to read; a missing file lists no directory.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/io`` when a configuration file
    ///   exists but cannot be read.
    public init(configuration: String = "/etc/ld.so.conf") throws(ImageError) {
        var directories: [String] = []
        var seen: Set<String> = []
        try Self.readConfiguration(configuration, into: &directories, seen: &seen)
        configuredDirectories = directories
    }

    /// The executables, their interpreters and every library they load, transitively, each once.
    ///
    /// - Parameter executables: ELF executables or shared objects on this machine.
    /// - Returns: The executables first, in order, then the interpreters and libraries in the
    ///   order they were found, as paths under the directories they were found in (not
    ///   with symlinks resolved: `ImageStore/makeImage(from:as:)` keeps those).
    /// - Throws: ``ImageError`` with code ``ImageError/Code/notFound`` when an executable does not
    ///   exist or a needed library is in no directory searched (the detail names it and who
    ///   needs it), ``ImageError/Code/invalidContent`` when a file is not ELF.
    public func closure(of executables: [String]) throws(ImageError) -> [String] {
        var order: [String] = []
        var seen: Set<String> = []
        var queue: [(path: String, object: ELFObject)] = []
        func add(_ path: String, _ object: ELFObject) {
            guard seen.insert(path).inserted else { return }
            order.append(path)
            queue.append((path, object))
        }
        for executable in executables {
            add(executable, try ELFObject(reading: executable))
        }
        var next = 0
        while next < queue.count {
            let (path, object) = queue[next]
            next += 1
            if let interpreter = object.interpreter, !seen.contains(interpreter) {
                add(interpreter, try ELFObject(reading: interpreter))
            }
            let origin = splitPath(path).parent
            for name in object.needed {
                let (found, library) = try find(name, for: object, origin: origin, neededBy: path)
                add(found, library)
            }
        }
        return order
    }

    /// The file `name` resolves to for `object`, and its headers.
    private func find(_ name: String, for object: ELFObject, origin: String, neededBy path: String) throws(ImageError) -> (String, ELFObject) {
        if name.contains("/") {
            return (name, try ELFObject(reading: name))
        }
        let own = (object.runpath.isEmpty ? object.rpath : []) + object.runpath
        let directories = own.map { $0.replacing("$ORIGIN", with: origin).replacing("${ORIGIN}", with: origin) }
            + configuredDirectories + Self.defaultDirectories(for: object)
        for directory in directories {
            let candidate = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            guard ELFObject.isELF(candidate), let library = try? ELFObject(reading: candidate),
                  library.elfClass == object.elfClass, library.machine == object.machine else { continue }
            return (candidate, library)
        }
        throw ImageError(code: .notFound, detail: "\(name), needed by \(path), is in none of \(directories.joined(separator: ", "))")
    }

    /// The loader's built-in directories for an object of this class and machine.
    private static func defaultDirectories(for object: ELFObject) -> [String] {
        let triple: String? =
            switch object.machine {
            case 62: "x86_64-linux-gnu"
            case 183: "aarch64-linux-gnu"
            case 3: "i386-linux-gnu"
            case 40: "arm-linux-gnueabihf"
            default: nil
            }
        let multiarch = triple.map { ["/lib/\($0)", "/usr/lib/\($0)"] } ?? []
        return multiarch + (object.elfClass == 2 ? ["/lib64", "/usr/lib64"] : []) + ["/lib", "/usr/lib"]
    }

    /// Appends the directories of one `ld.so.conf` file: one or more per line (separated by
    /// blanks, commas or colons), `#` comments, `include <glob>` lines relative to the file's
    /// directory, `hwcap` lines ignored.
    private static func readConfiguration(_ path: String, into directories: inout [String], seen: inout Set<String>) throws(ImageError) {
        guard seen.insert(path).inserted else { return }
        let bytes: [UInt8]
        do {
            bytes = try readWholeFile(path, limit: 1 << 20)
        } catch {
            if error.errno == .noSuchFileOrDirectory { return }
            throw ImageError(error)
        }
        for rawLine in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let line = rawLine.prefix { $0 != "#" }
            let words = line.split { $0 == " " || $0 == "\t" || $0 == "," || $0 == ":" }.map(String.init)
            guard let first = words.first else { continue }
            if first == "hwcap" { continue }
            if first == "include" {
                for pattern in words.dropFirst() {
                    let absolute = pattern.hasPrefix("/") ? pattern : splitPath(path).parent + "/" + pattern
                    for file in matches(absolute) {
                        try readConfiguration(file, into: &directories, seen: &seen)
                    }
                }
                continue
            }
            for directory in words where directory.hasPrefix("/") && !directories.contains(directory) {
                directories.append(directory)
            }
        }
    }

    /// The paths matching a glob pattern, sorted (`glob(3)`).
    private static func matches(_ pattern: String) -> [String] {
        var result = glob_t()
        defer { globfree(&result) }
        guard glob(pattern, 0, nil, &result) == 0 else { return [] }
        return (0..<Int(result.gl_pathc)).compactMap { result.gl_pathv[$0].map { String(cString: $0) } }
    }
}
