import Glibc
import Layers
import Testing
import TestSupport

/// `docker cp`'s rules between two trees, here both below one scratch root: where a copy of
/// `src` lands for each kind of destination, and which copies are refused.
@Suite(.serialized)
struct PathCopyTests {
    /// One copy: from `source` to `destination` (paths below the root), and the paths that
    /// exist afterwards below `out`, or the error code.
    struct Rule: Sendable, CustomStringConvertible {
        var description: String
        var source: String
        var destination: String
        var outcome: Outcome

        init(_ description: String, _ source: String, _ destination: String, _ outcome: Outcome) {
            (self.description, self.source, self.destination, self.outcome) = (description, source, destination, outcome)
        }
    }

    /// What a copy does: create these paths below `out`, or fail with this code.
    enum Outcome: Sendable {
        case creates([String])
        case refused(LayerError.Code)
    }

    static let rules: [Rule] = [
        Rule("a file to a missing name is written as that name", "/src/file", "/out/new", .creates(["new"])),
        Rule("a file to a directory goes under its own name", "/src/file", "/out", .creates(["file"])),
        Rule("a file replaces a file", "/src/file", "/out/existing", .creates(["existing"])),
        Rule("a directory to a directory goes under its own name", "/src/dir", "/out", .creates(["dir", "dir/inner"])),
        Rule("a directory's contents with /.", "/src/dir/.", "/out", .creates(["inner"])),
        Rule("a directory to a missing name is that name", "/src/dir", "/out/copy", .creates(["copy", "copy/inner"])),
        Rule("a directory's contents to a missing name", "/src/dir/.", "/out/fresh", .creates(["fresh", "fresh/inner"])),
        Rule("a symlink is copied as the symlink", "/src/link", "/out", .creates(["link"])),
        Rule("a directory is not copied onto a file", "/src/dir", "/out/existing", .refused(.invalidArgument)),
        Rule("a file to a missing directory name", "/src/file", "/out/missing/", .refused(.notFound)),
        Rule("a directory into itself", "/src", "/src/dir", .refused(.invalidArgument)),
        Rule("a directory into itself through a symlink", "/src", "/out/up/dir", .refused(.invalidArgument)),
        Rule("a missing source", "/src/nope", "/out", .refused(.notFound)),
        Rule("a missing destination parent", "/src/file", "/out/a/b", .refused(.notFound)),
    ]

    @Test(arguments: rules)
    func copiesFollowDockersRules(_ rule: Rule) throws {
        let root = try TemporaryDirectory(prefix: "pathcopy")
        defer { try? root.remove() }
        for directory in ["src", "src/dir", "out"] { #expect(mkdir(root.path + "/" + directory, 0o755) == 0) }
        try writeBytes(Array("file".utf8), to: root.path + "/src/file")
        try writeBytes(Array("inner".utf8), to: root.path + "/src/dir/inner")
        #expect(symlink("/etc/passwd", root.path + "/src/link") == 0)
        try writeBytes(Array("old".utf8), to: root.path + "/out/existing")
        #expect(symlink("/src", root.path + "/out/up") == 0)

        do {
            try copyPath(rule.source, in: root.path, to: rule.destination, in: root.path, preservingOwners: false)
            guard case .creates(let created) = rule.outcome else {
                Issue.record("\(rule) was not refused")
                return
            }
            let tree = captureTree(root.path + "/out").keys.filter {
                $0 != "up" && ($0 != "existing" || rule.destination.hasSuffix("existing"))
            }
            #expect(tree.sorted() == created.sorted())
            if rule.destination.hasSuffix("existing") { #expect(readAll(root.path + "/out/existing") == Array("file".utf8)) }
        } catch {
            guard case .refused(let code) = rule.outcome else {
                Issue.record("\(rule): \(error)")
                return
            }
            #expect(error.code == code, "\(error)")
            #expect(readAll(root.path + "/out/existing") == Array("old".utf8))
        }
        // The symlink to the host's /etc/passwd is copied, never followed out of the root.
        #expect(readAll("/etc/passwd") != Array("file".utf8))
    }

    @Test func aSocketIsLeftOutAndTheRestIsCopied() throws {
        let root = try TemporaryDirectory(prefix: "pathcopy")
        defer { try? root.remove() }
        for directory in ["src", "out"] { #expect(mkdir(root.path + "/" + directory, 0o755) == 0) }
        try writeBytes(Array("a".utf8), to: root.path + "/src/a")
        #expect(mknod(root.path + "/src/socket", S_IFSOCK | 0o755, 0) == 0)
        try writeBytes(Array("z".utf8), to: root.path + "/src/z")
        try copyPath("/src", in: root.path, to: "/out", in: root.path, preservingOwners: false)
        #expect(captureTree(root.path + "/out").keys.sorted() == ["src", "src/a", "src/z"])
    }
}
