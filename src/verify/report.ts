/** What verify found. Problems fail verification; warnings (e.g. unreferenced blobs) do not. */
export interface VerifyFinding {
  /** The blob the finding is about. */
  digest?: string;
  /** The file inside the layout or archive, when the finding is about a file. */
  path?: string;
  problem: string;
}

export interface VerifyReport {
  /** True when there are no problems (warnings do not count). */
  ok: boolean;
  problems: VerifyFinding[];
  warnings: VerifyFinding[];
  checked: {
    /** Manifests and indexes read and parsed. */
    manifests: number;
    configs: number;
    layers: number;
    /** Blob bytes read and hashed (compressed sizes). */
    bytes: number;
  };
}

/** Collects findings in the order they are made; `finish` sorts nothing so output follows the graph. */
export class Findings {
  readonly problems: VerifyFinding[] = [];
  readonly warnings: VerifyFinding[] = [];
  readonly checked = { manifests: 0, configs: 0, layers: 0, bytes: 0 };

  problem(problem: string, at: { digest?: string; path?: string } = {}): void {
    this.problems.push({ ...at, problem });
  }

  warning(problem: string, at: { digest?: string; path?: string } = {}): void {
    this.warnings.push({ ...at, problem });
  }

  report(): VerifyReport {
    return { ok: this.problems.length === 0, problems: this.problems, warnings: this.warnings, checked: this.checked };
  }
}
