import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startRegistry } from '../helpers/registry.js';
import { seedImage } from '../helpers/seed.js';
import { skopeo, skopeoFlags, skopeoInspect } from '../helpers/skopeo.js';

// skopeo is an independent client (containers/image): if it can log in and
// copy through our auth setups, the token server and TLS material are right.
describe('skopeo against the harness registries', () => {
  for (const mode of [
    { tls: false, auth: 'basic' as const },
    { tls: true, auth: 'token' as const },
    { tls: false, auth: 'token' as const },
  ]) {
    it(`inspects and copies with ${mode.auth} auth${mode.tls ? ' over TLS' : ''}`, async (t) => {
      const src = await startRegistry(mode);
      t.after(() => src.stop());
      const dst = await startRegistry({ tls: true, auth: 'token' });
      t.after(() => dst.stop());
      const image = await seedImage(src, 'harness/sk', 'v1');

      const raw = await skopeoInspect(src, 'harness/sk:v1', { raw: true });
      assert.equal(raw, image.manifest.toString());
      await assert.rejects(skopeoInspect(src, 'harness/sk:v1', { user: null }), /unauthorized|authentication required/i);

      await skopeo(['copy', '--preserve-digests', ...skopeoFlags(src, 'src'), ...skopeoFlags(dst, 'dest'),
        `docker://${src.host}/harness/sk:v1`, `docker://${dst.host}/copied/sk:v2`]);
      const copied = JSON.parse(await skopeoInspect(dst, 'copied/sk:v2')) as { Digest: string };
      assert.equal(copied.Digest, image.manifestDigest);
      assert.ok(dst.tokenServer!.requests.some((r) => r.user === 'testuser' && r.scopes.some((s) => s.includes('copied/sk') && s.includes('push'))));
    });
  }
});
