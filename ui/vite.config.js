// The dashboard is served by the hub under /ui/ (assets) with the page itself at /.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/ui/',
  build: { target: 'es2020', chunkSizeWarningLimit: 1024, sourcemap: false },
});
