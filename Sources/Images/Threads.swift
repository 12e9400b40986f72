import Foundation

/// Runs blocking work (whole-file hashing, archive copies) on a thread of its own and resumes
/// the caller with the result, so a large file never occupies a cooperative-pool thread
/// (STYLE.md, "Concurrency").
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws(ImageError) -> T) async throws(ImageError) -> T {
    let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, ImageError>, Never>) in
        let thread = Thread {
            do throws(ImageError) {
                continuation.resume(returning: .success(try body()))
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
        thread.start()
    }
    return try result.get()
}
